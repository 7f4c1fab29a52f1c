"""Unit supervision: what the PackML unit and the belt PLC are told, from what was observed.

Pure: one ``step(Observed) -> Actions`` per control cycle, no I/O, no clock of its own, no
callbacks. The controller reads the PLCs, builds an ``Observed``, and writes what ``Actions``
says (a belt command with its seq, a diverter reset), stores its events and logs its notes.

The rules, in the order ``step`` applies them:

1. **Handshake.** Every command that moves the belt is a request: written with a new seq, in
   flight until the PLC's ``belt_command_ack`` equals that seq. Accepted: the unit enters the
   acting state and waits for the belt to reach the target. Refused (a cause still latched, a
   PLC stricter than expected): the unit stays where the belt is - nothing to undo, no state
   change recorded - and the same goal is retried with backoff (0.25 s doubling to
   ``retry_max_s``): never abandoned, never written every cycle. No ack within
   ``ack_timeout_s`` (a lost write, a PLC that restarted under it): the same, as a timeout.
   An operator's command is answered with the belt's answer.
2. **Follow the belt.** The belt PLC is where the PackML state really is. Its acting state
   reaching the target completes the unit's (SC). Whenever it reports something the unit's
   own command flow does not explain (it held itself on our watchdog, a jam stopped it, it came
   back from a power cycle in Stopped, a local operator reset it) the unit takes that state in
   one recorded step (`PackMLUnit.resync`). So the unit never waits for a belt state that will
   not come, and never sends a command the belt's state refuses (Reset to a Held belt).
3. **Operator commands** the unit's state allows go to the belt at once (no backoff); those it
   does not allow are refused with the standard's reason. Once the belt accepts, Stop, Hold,
   Suspend, Abort and Complete take the unit off automatic until Reset, Start, Unhold, Unsuspend
   or Clear hands it back.
4. **Fault reactions** from the one fault table: Abort and Stop once when the fault is raised;
   Hold once when raised, and for as long as a fault that holds while active is active. With
   the conveyor out of reach the unit reacts at once and the belt gets the command when it is
   back (step 6).
5. **Automatic** (``auto_start`` / ``auto_recover``): from a wait state, the one command towards
   Execute (Stopped/Complete -> Reset, Idle -> Start, Held -> Unhold, Suspended -> Unsuspend,
   Aborted -> Clear), only while the belt agrees with the unit, no fault blocks recovery, the
   PLC holds our settings (a PLC back from a power cycle has a zero speed setpoint), and the
   retry time has come.
6. **Acting without the belt**: a unit that entered an acting state while the belt was out of
   reach sends its command once the belt is back, unless the belt is already there.
7. **Diverter reset**: while the diverter reports a latched fault, a new ``reset_seq`` at most
   every ``diverter_reset_every_s``.

Log lines (``notes``) and stored events are made on changes only: a refusal streak is noted
when it starts, summarised at most once a minute, and closed when the command is accepted.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from control.faults import FAULTS, Fault, Reaction
from control.packml import PackMLUnit
from plant.codes import CommandResult, PackMLCommand, PackMLState, UnitMode
from plant.packml import ACTING_STATES, SC_NEXT, next_state

__all__ = ["Actions", "BeltReading", "Observed", "OperatorCommand", "Supervisor", "SupervisorSettings"]

S = PackMLState
C = PackMLCommand

# The belt command each acting state of the unit needs (the belt follows the same model).
BELT_COMMAND_FOR: dict[PackMLState, PackMLCommand] = {
    S.RESETTING: C.RESET,
    S.STARTING: C.START,
    S.HOLDING: C.HOLD,
    S.UNHOLDING: C.UNHOLD,
    S.STOPPING: C.STOP,
    S.ABORTING: C.ABORT,
    S.CLEARING: C.CLEAR,
    S.SUSPENDING: C.SUSPEND,
    S.UNSUSPENDING: C.UNSUSPEND,
    S.COMPLETING: C.COMPLETE,
}
# From each wait state, the one command that leads towards Execute.
AUTO_NEXT: dict[PackMLState, PackMLCommand] = {
    S.STOPPED: C.RESET,
    S.COMPLETE: C.RESET,
    S.IDLE: C.START,
    S.HELD: C.UNHOLD,
    S.SUSPENDED: C.UNSUSPEND,
    S.ABORTED: C.CLEAR,
}
RECOVERING = frozenset({S.HELD, S.SUSPENDED, S.ABORTED})  # what auto_recover (not auto_start) governs
PAUSES = frozenset({C.STOP, C.HOLD, C.SUSPEND, C.ABORT, C.COMPLETE})  # operator takes the unit off automatic
RESUMES = frozenset({C.RESET, C.START, C.UNHOLD, C.UNSUSPEND, C.CLEAR})  # ...and hands it back


@dataclass(frozen=True, slots=True)
class SupervisorSettings:
    auto_start: bool = True
    auto_recover: bool = True
    retry_base_s: float = 0.25
    retry_max_s: float = 2.0
    ack_timeout_s: float = 2.0
    acting_timeout_s: float = 30.0  # an accepted command whose belt never leaves the source state
    repeat_note_s: float = 60.0  # a refusal streak is summarised at most this often
    diverter_reset_every_s: float = 1.0


@dataclass(frozen=True, slots=True)
class BeltReading:
    """The conveyor PLC's belt as read this cycle (raw numbers; unknown states are tolerated)."""

    state: int
    ack: int
    result: int


@dataclass(frozen=True, slots=True)
class OperatorCommand:
    id: int
    name: str
    user: str = ""
    args: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Observed:
    """One cycle's inputs. ``belt`` is None when the conveyor PLC was not read this cycle."""

    now: float
    belt: BeltReading | None = None
    active: frozenset[Fault] = frozenset()
    raised: tuple[Fault, ...] = ()  # raised since the last step
    diverter_latched: bool = False  # the diverter reports a latched fault bit
    diverter_seen: bool = False  # the diverter PLC was read this cycle
    operator: tuple[OperatorCommand, ...] = ()
    plc_ready: bool = True  # the conveyor PLC holds our settings (speed setpoint, watchdog): it may start


@dataclass(slots=True)
class Actions:
    """What the controller writes, stores and logs for this cycle."""

    belt_command: tuple[PackMLCommand, int] | None = None  # (command, seq)
    diverter_reset: int | None = None  # new reset_seq
    events: list[tuple[str, str, int, str]] = field(default_factory=list)  # (kind, name, code, detail)
    notes: list[tuple[int, str]] = field(default_factory=list)  # (logging level, message)
    operator_results: list[tuple[int, str]] = field(default_factory=list)  # (command id, result)
    meta: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Pending:
    """A belt command written and not yet answered (or answered, and the belt not yet there)."""

    command: PackMLCommand
    seq: int
    for_state: PackMLState  # the acting state the unit is in (or enters when the belt accepts)
    source: PackMLState  # the belt's state when it was sent
    sent_at: float
    operator: int | None = None  # the operator command it carries out (answered with the belt's answer)
    accepted_at: float | None = None


@dataclass(slots=True)
class _Streak:
    """Consecutive refusals (or unacknowledged sends) of belt commands."""

    count: int = 0
    since: float = 0.0
    noted_at: float = -math.inf


def _state(number: int) -> PackMLState | None:
    try:
        return PackMLState(number)
    except ValueError:
        return None


class Supervisor:
    """The unit and its belt handshake; construct once per controller start."""

    def __init__(
        self,
        settings: SupervisorSettings | None = None,
        *,
        belt_seq: int = 0,
        diverter_reset_seq: int = 0,
        unit: PackMLUnit | None = None,
    ) -> None:
        self.cfg = settings or SupervisorSettings()
        self.unit = unit or PackMLUnit()
        self.belt_seq = belt_seq
        self.diverter_reset_seq = diverter_reset_seq
        self.pending: _Pending | None = None
        self.retry_at = -math.inf
        self.paused_by: PackMLCommand | None = None
        self._streak = _Streak()
        self._div_reset_at = -math.inf
        self._blocked_by: tuple[str, ...] = ()
        self._unknown_belt: int | None = None
        self._late: list[tuple[int, str]] = []  # operator answers found after a step

    # ------------------------------------------------------------------------------ the step
    def step(self, obs: Observed) -> Actions:
        a = Actions()
        a.operator_results += self._late
        self._late = []
        belt: PackMLState | None = None
        if obs.belt is not None:
            belt = _state(obs.belt.state)
            if belt is None:
                if self._unknown_belt != obs.belt.state:
                    a.notes.append((logging.WARNING, f"belt reports state {obs.belt.state}, not a PackML state: "
                                                     "no belt command until it does"))
                self._unknown_belt = obs.belt.state
            else:
                self._unknown_belt = None
                self._handshake(obs.belt, belt, obs.now, a)
                self._follow(belt, obs)
        self._operator(obs, belt, a)
        self._reactions(obs, belt, a)
        if belt is not None:
            self._auto(belt, obs, a)
            self._finish_acting(belt, obs.now, a)
        self._diverter(obs, a)
        self._drain_history(a)
        return a

    def belt_write_failed(self) -> None:
        """The belt command could not be written: it was not sent; the goal is tried again next cycle."""
        p, self.pending = self.pending, None
        if p is not None and p.operator is not None:
            self._late.append((p.operator, "not sent: the write to the conveyor PLC failed"))

    # ------------------------------------------------------------------------------ requests
    def _request(self, cmd: PackMLCommand, belt: PackMLState, now: float, a: Actions,
                 operator: int | None = None) -> None:
        """Send ``cmd`` to the belt. The unit enters the acting state when the belt accepts it
        (or is in it already): a refusal leaves the unit where the belt is, with nothing to undo
        and no state change recorded, however often it is retried."""
        u = self.unit.state
        target = u if u in ACTING_STATES and BELT_COMMAND_FOR.get(u) == cmd else next_state(u, cmd)
        assert target is not None, (cmd, u)
        self.belt_seq = (self.belt_seq + 1) & 0xFFFFFFFF or 1
        self.pending = _Pending(cmd, self.belt_seq, target, belt, now, operator)
        a.belt_command = (cmd, self.belt_seq)
        a.meta["belt_seq"] = str(self.belt_seq)

    # ------------------------------------------------------------------------------ 1 handshake
    def _handshake(self, b: BeltReading, belt: PackMLState, now: float, a: Actions) -> None:
        p = self.pending
        if p is None or p.accepted_at is not None:
            return
        if b.ack == p.seq:
            if b.result == CommandResult.ACCEPTED:
                p.accepted_at = now
                self._accepted(p, belt, now, a)
                return
            why = "refused in this state" if b.result == CommandResult.REFUSED else f"result {b.result}"
            what = f"belt refused {p.command.name} (seq {p.seq}, {why}) in {belt.name}"
            self._failed(p, what, "belt_refused", now, a)
            if p.operator is not None:
                a.operator_results.append((p.operator, f"refused by the belt PLC in {belt.name}"))
        elif now - p.sent_at > self.cfg.ack_timeout_s:
            what = f"belt did not acknowledge {p.command.name} (seq {p.seq}) within {self.cfg.ack_timeout_s:.1f} s"
            self._failed(p, what, "belt_no_ack", now, a)
            if p.operator is not None:
                a.operator_results.append((p.operator, "no answer from the belt PLC"))
        else:
            return
        self.pending = None
        if self.unit.state == p.for_state:  # it was in the acting state already (entered while the belt was unknown)
            self.unit.resync(belt, f"belt stays {belt.name}: {p.command.name} not done")

    def _accepted(self, p: _Pending, belt: PackMLState, now: float, a: Actions) -> None:
        unit = self.unit
        if unit.state != p.for_state:
            unit.command(p.command)
        if p.operator is not None:
            a.operator_results.append((p.operator, "accepted"))
            if p.command in PAUSES:
                self.paused_by = p.command
            elif p.command in RESUMES:
                self.paused_by = None
        if self._streak.count:
            msg = (f"belt accepted {p.command.name} (seq {p.seq}) after {self._streak.count} "
                   f"refused or unanswered in {now - self._streak.since:.1f} s")
            a.notes.append((logging.INFO, msg))
            a.events.append(("belt_accepted", p.command.name, p.seq, msg))
        self._streak = _Streak()

    def _failed(self, p: _Pending, what: str, kind: str, now: float, a: Actions) -> None:
        st = self._streak
        if st.count == 0:
            st.since = now
        st.count += 1
        self.retry_at = now + min(self.cfg.retry_max_s, self.cfg.retry_base_s * 2.0 ** (st.count - 1))
        if st.count == 1 or now - st.noted_at >= self.cfg.repeat_note_s:
            detail = what if st.count == 1 else f"{what}; {st.count} times in {now - st.since:.0f} s"
            a.notes.append((logging.WARNING, detail + f"; retrying every {self.cfg.retry_max_s:g} s at most"))
            a.events.append((kind, p.command.name, p.seq, detail))
            st.noted_at = now

    # ------------------------------------------------------------------------------ 2 follow
    def _follow(self, belt: PackMLState, obs: Observed) -> None:
        unit = self.unit
        p = self.pending
        if p is not None and p.accepted_at is None:
            return  # our command is on its way: the belt answers it first
        u = unit.state
        if u in ACTING_STATES and SC_NEXT[u] == belt:
            unit.state_complete()
            if unit.state == S.EXECUTE:
                unit.clear_stop_reason()
            if p is not None and p.for_state == u:
                self.pending = None
            return
        if belt == u:
            return
        if (
            p is not None and p.for_state == u and belt == p.source and p.accepted_at is not None
            and obs.now - p.accepted_at < self.cfg.acting_timeout_s
        ):
            return  # accepted; the PLC has not started on it yet
        latched = sorted(f.name.lower() for f in obs.active if FAULTS[f].reaction != Reaction.ALARM)
        why = f"the belt reports {belt.name}" + (f" ({', '.join(latched)})" if latched else "")
        unit.resync(belt, why)
        self.pending = None
        if belt == S.EXECUTE:
            unit.clear_stop_reason()

    # ------------------------------------------------------------------------------ 3 operator
    def _operator(self, obs: Observed, belt: PackMLState | None, a: Actions) -> None:
        for oc in obs.operator:
            try:
                cmd = PackMLCommand[oc.name.strip().upper()]
            except KeyError:
                a.operator_results.append((oc.id, f"unknown command {oc.name!r}"))
                continue
            u = self.unit.state
            who = f"{oc.user}: " if oc.user else ""
            if next_state(u, cmd) is None:
                out = self.unit.command(cmd)  # refused: recorded with the standard's reason
                a.events.append(("operator", cmd.name, int(cmd), who + out.reason))
                a.operator_results.append((oc.id, f"refused: {out.reason}"))
            elif belt is None:
                a.events.append(("operator", cmd.name, int(cmd), who + "conveyor PLC not reachable"))
                a.operator_results.append((oc.id, "refused: the conveyor PLC is not reachable"))
            else:
                a.events.append(("operator", cmd.name, int(cmd), who + "sent to the belt PLC"))
                self._streak = _Streak()  # an operator's command goes out now, whatever the backoff
                self.retry_at = obs.now
                self._request(cmd, belt, obs.now, a, operator=oc.id)

    # ------------------------------------------------------------------------------ 4 reactions
    def _reactions(self, obs: Observed, belt: PackMLState | None, a: Actions) -> None:
        wanted: list[tuple[PackMLCommand, Fault]] = []
        for f in obs.raised:
            cmd = FAULTS[f].reaction.command
            if cmd is not None:
                self.unit.set_stop_reason(int(f), f.name.lower())  # the first one stays: the root cause
            if cmd is not None and (cmd != C.HOLD or not FAULTS[f].holds_while_active):
                wanted.append((cmd, f))
        holding = sorted(f for f in obs.active if FAULTS[f].holds_while_active)
        if holding:
            wanted.append((C.HOLD, holding[0]))
        for cmd, f in sorted(wanted, key=lambda w: _STRENGTH[w[0]]):
            u = self.unit.state
            p = self.pending
            if next_state(u, cmd) is None or (p is not None and p.command == cmd):
                continue
            if belt is None:  # the belt is out of reach: the unit reacts now, the belt when it is back
                self.unit.command(cmd)
            else:
                self.retry_at = obs.now
                self._request(cmd, belt, obs.now, a)
            self.unit.set_stop_reason(int(f), f.name.lower())
            return  # the strongest reaction only; the next cycle sees the rest

    # ------------------------------------------------------------------------------ 5 automatic
    def _auto(self, belt: PackMLState, obs: Observed, a: Actions) -> None:
        cfg = self.cfg
        u = self.unit.state
        cmd = AUTO_NEXT.get(u)
        if cmd is None or self.paused_by is not None or self.pending is not None or belt != u:
            return
        if not (cfg.auto_recover if u in RECOVERING else cfg.auto_start):
            return
        if self.unit.mode != UnitMode.PRODUCTION:  # Maintenance and Manual: a person drives the belt
            return
        blockers = tuple(sorted(f.name.lower() for f in obs.active if FAULTS[f].blocks_recovery))
        if blockers != self._blocked_by:
            if blockers:
                a.notes.append((logging.INFO, f"unit stays {u.name} while {', '.join(blockers)} "
                                              f"{'is' if len(blockers) == 1 else 'are'} active"))
            self._blocked_by = blockers
        if blockers or obs.now < self.retry_at or not obs.plc_ready:
            return
        self._request(cmd, belt, obs.now, a)

    # ------------------------------------------------------------------------------ 6 acting
    def _finish_acting(self, belt: PackMLState, now: float, a: Actions) -> None:
        """The unit entered an acting state while the belt was out of reach (a link down): the
        belt gets that command once it is back, unless it is already there."""
        u = self.unit.state
        cmd = BELT_COMMAND_FOR.get(u)
        if cmd is None or belt in (u, SC_NEXT[u]) or self.pending is not None or now < self.retry_at:
            return
        self._request(cmd, belt, now, a)

    # ------------------------------------------------------------------------------ 7 diverter
    def _diverter(self, obs: Observed, a: Actions) -> None:
        if obs.diverter_latched and obs.diverter_seen and obs.now >= self._div_reset_at:
            self.diverter_reset_seq = (self.diverter_reset_seq + 1) & 0xFFFFFFFF or 1
            a.diverter_reset = self.diverter_reset_seq
            self._div_reset_at = obs.now + self.cfg.diverter_reset_every_s

    # ------------------------------------------------------------------------------ records
    def _drain_history(self, a: Actions) -> None:
        for out in self.unit.history:
            if out.accepted and out.before != out.after:
                detail = out.command if not out.reason else f"{out.command}: {out.reason}"
                a.events.append(("state", out.after.name, int(out.after), detail))
            elif not out.accepted:
                a.events.append(("refused", out.command, int(out.before), out.reason))
        self.unit.history.clear()


_STRENGTH = {C.ABORT: 0, C.STOP: 1, C.HOLD: 2}
