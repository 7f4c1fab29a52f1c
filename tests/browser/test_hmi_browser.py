"""The operator HMI in a real browser (Debian's Chromium, headless) against real processes: the
simulator and the controller sorting parcels (`sortctl demo --no-hmi`) and `sortctl hmi`.

Each test asserts what an operator relies on, waiting on the page's live values (never a sleep
taken as an assertion), and cross-checks the event store read-only. One plant serves the
module; each test makes its own preconditions. With ``--update-screenshots`` the same tests
save each page to docs/img/hmi-<page>.png.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from control.routing.plan import load_plan
from plant.site import ChuteKind, load_site
from tests.browser import browser
from tests.browser.browser import Page, number, tid
from tests.browser.plant import CONFIG, DISABLED_CHUTE, ROOT, Plant, wait_for

if not browser.installed():
    pytest.skip("chromium/chromedriver not installed: ./dev setup installs them", allow_module_level=True)

pytestmark = pytest.mark.slow

IMG = ROOT / "docs" / "img"
Shot = Callable[[str], None]


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plant]:
    p = Plant(tmp_path_factory.mktemp("plant"))
    try:
        p.start()
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chrome]:
    work = tmp_path_factory.mktemp("chromium")
    d = browser.make_driver(work / "profile", work / "chromedriver.log")
    try:
        yield d
    finally:
        d.quit()


@pytest.fixture
def page(driver: Chrome, plant: Plant) -> Iterator[Page]:
    """The module's browser, logged out; after the test, no script error in its console."""
    driver.delete_all_cookies()
    p = Page(driver, plant.url)
    p.script_errors()
    yield p
    errors = p.script_errors()
    assert not errors, f"the browser console reported errors: {errors}"


@pytest.fixture
def shot(request: pytest.FixtureRequest, driver: Chrome) -> Shot:
    """``shot("overview")`` saves the browser's view to docs/img/hmi-overview.png, only with
    ``--update-screenshots``."""
    update = bool(request.config.getoption("--update-screenshots"))

    def save(name: str) -> None:
        if not update:
            return
        from PIL import Image  # matplotlib's dependency; only needed when saving

        png = driver.get_screenshot_as_png()
        img = Image.open(io.BytesIO(png)).convert("RGB")
        assert img.size == (browser.WIDTH, browser.HEIGHT), f"screenshot is {img.size}"
        IMG.mkdir(parents=True, exist_ok=True)
        # a flat dark UI: a 256-colour palette keeps it sharp and a fraction of the size
        img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            IMG / f"hmi-{name}.png", optimize=True)

    return save


def open_alarm(plant: Plant) -> int:
    """An unacknowledged alarm still active: the scenario disables a chute for good, so its
    destinations' ``destination_full`` alarm stays up until someone acknowledges it."""
    def probe() -> int | None:
        with plant.store() as s:
            return next((a.id for a in s.alarms(open_only=True)
                         if a.name == "destination_full" and a.cleared_t is None and a.acked_t is None), None)
    return wait_for("an unacknowledged destination_full alarm", probe, 60.0)


def logged_in(page: Page, user: str, password: str) -> None:
    page.login(user, password)
    page.wait("the overview after the login", lambda d: page.path.startswith("/overview"), 20.0)


# ---------------------------------------------------------------------------- the site and plan files
SITE = load_site(CONFIG / "site.yaml")
PLAN = load_plan(CONFIG / "sortplan.csv", SITE)


def _plan_with(rule: str, chutes: str) -> tuple[str, int]:
    """config/sortplan.csv with the chutes of the rule described ``rule`` changed: the text, and
    that rule's line in the file."""
    line = next(r.line for r in PLAN.rules if r.description == rule)
    lines = (CONFIG / "sortplan.csv").read_text(encoding="utf-8").splitlines()
    cols = next(ln for ln in lines if not ln.startswith("#")).split(",")
    cells = lines[line - 1].split(",")
    cells[cols.index("chutes")] = chutes
    lines[line - 1] = ",".join(cells)
    return "\n".join(lines) + "\n", line


def _active_version(page: Page) -> int:
    return number(page.text("plan-active-version").split()[0])


def _busiest_chute(plant: Plant) -> int:
    """The destination chute that received most parcels so far and shares a rule with another."""
    normal = {c.id for c in SITE.chutes if c.kind == ChuteKind.NORMAL} - {DISABLED_CHUTE}
    shared = {c for r in PLAN.rules if len(r.chutes) > 1 for c in r.chutes}
    counts = plant.rows("SELECT chute, COUNT(*) FROM parcel_events WHERE kind='routed' GROUP BY chute")
    ranked = sorted(((n, c) for c, n in counts if c in normal & shared), reverse=True)
    assert ranked, f"no parcel routed to a destination chute yet: {counts}"
    return int(ranked[0][1])


def _siblings(chute: int) -> set[int]:
    """Where a chute's parcels go when it is out: the other chutes of its rules, its fallbacks."""
    near = {c for r in PLAN.rules if chute in r.chutes for c in r.chutes} | set(SITE.chute(chute).fallback)
    return near - {chute}


# ---------------------------------------------------------------------------- 1. login, live overview
def test_login_then_overview_shows_execute_and_counts_going_up(plant: Plant, page: Page, shot: Shot) -> None:
    page.open("/login")
    page.type("login-user", plant.operator.name)
    shot("login")
    page.type("login-password", plant.operator.password)
    page.click("login-submit")
    page.wait("the overview", lambda d: page.path.startswith("/overview"), 20.0)
    assert page.text("hdr-user") == plant.operator.name
    assert page.text("hdr-role").lower() == "operator"

    page.wait_text("hdr-unit-state", lambda s: s == "EXECUTE", "shows EXECUTE")
    page.wait("the PackML diagram to mark EXECUTE", lambda d: "current" in page.attr("pml-state-EXECUTE", "class"))
    page.wait_live("overview")
    page.driver.execute_script("window.__sameDocument = 'yes';")  # gone if the page reloads
    first = number(page.text("kpi-shift-finished"))
    later = number(page.wait_text("kpi-shift-finished", lambda s: s != "-" and number(s) > first,
                                  f"counts past {first} while we watch", 30.0))
    assert page.driver.execute_script("return window.__sameDocument;") == "yes", "the page reloaded"
    with plant.store() as s:
        st = s.status()
    finished = st.by_state.get("sorted", 0) + st.by_state.get("rejected", 0)
    assert later <= finished, f"overview shows {later} finished, the store has {finished}"
    assert number(page.text("kpi-in-flight")) >= 0
    page.wait_text("link-service", lambda s: s == "running", "shows the service running")
    page.wait_text("kpi-rate-now", lambda s: s not in ("-", "0"), "shows a rate")
    # an operator may send the commands the state allows: Stop is, Start is not (already running)
    assert page.enabled("cmd-STOP")
    assert not page.enabled("cmd-START")


# ---------------------------------------------------------------------------- 2. refused
def test_wrong_password_no_session_and_a_viewer_commands_nothing(plant: Plant, page: Page) -> None:
    page.open("/login")
    page.type("login-user", plant.engineer.name)
    page.type("login-password", plant.engineer.password + "x")
    page.click("login-submit")
    err = page.wait_text("login-error", lambda s: bool(s), "shows an error")
    assert "wrong user name or password" in err
    assert page.path.startswith("/login")
    assert page.driver.get_cookie("hmi_session") is None
    page.open("/overview")
    page.wait("the login page (no session)", lambda d: page.path.startswith("/login"), 10.0)

    before = plant.last_command_id()
    logged_in(page, plant.viewer.name, plant.viewer.password)
    assert page.text("hdr-role").lower() == "viewer"
    page.wait_live("overview")
    buttons = page.all("#packml-commands .cmd")
    assert buttons, "no PackML command buttons on the overview"
    assert [b.get_attribute("data-command") for b in buttons if b.is_enabled()] == []
    assert not page.present("mode-select") and not page.present("mode-set")

    page.open("/chutes")
    page.wait_live("chutes")
    page.click("chute-3")
    page.wait("the chute dialog", lambda d: page.shown("chute-dialog"), 10.0)
    assert not page.enabled("chute-out")
    assert not page.enabled("chute-in")
    page.click("chute-cancel")

    page.open("/alarms")
    page.wait_live("alarms")
    assert not page.present("alarm-ack-all")
    assert page.all("#alarms-active-body button") == []

    page.open("/plan")
    assert not page.present("plan-form") and not page.present("plan-rollback")

    # the server refuses a viewer's command whatever the page shows
    alarm = open_alarm(plant)
    for command, args in (("CHUTE_OUT", {"chute": 3, "reason": "viewer test"}), ("ALARM_ACK", {"alarm": alarm}),
                          ("STOP", {})):
        status, body = page.send_js(command, args)
        assert status == 403, (command, status, body)
    assert plant.commands_by(plant.viewer.name) == []
    assert plant.last_command_id() == before, "a command was stored"


# ---------------------------------------------------------------------------- 3. alarm ack
def test_acknowledge_an_alarm(plant: Plant, page: Page, shot: Shot) -> None:
    alarm = open_alarm(plant)
    logged_in(page, plant.operator.name, plant.operator.password)
    page.open("/alarms")
    row = f"alarm-{alarm}"
    page.wait(f"alarm {alarm} on the page", lambda d: page.present(row))
    assert "destination_full" in page.text(row)
    # live updates that leave the alarm alone leave its row alone: a row rebuilt between an
    # operator's mouse-down and mouse-up on Ack loses the click
    page.wait_live("alarms")
    button = page.find(f"{row}-ack")
    for _ in range(2):
        seen = page.live("overview")
        page.wait("a live overview update", lambda d, seen=seen: page.live("overview") > seen)
    try:
        assert button.is_displayed() and button.is_enabled()
    except StaleElementReferenceException:
        pytest.fail(f"alarm {alarm}'s Ack button was redrawn by live updates that did not change it")
    page.click(f"{row}-ack")

    acked = f"#{row} td:nth-child(8)"  # the Acknowledged column: time and user
    page.wait(f"alarm {alarm} shown acknowledged by {plant.operator.name}",
              lambda d: d.find_element(By.CSS_SELECTOR, acked).text.strip().endswith(plant.operator.name))
    page.wait(f"alarm {alarm}'s Ack button gone", lambda d: not page.present(f"{row}-ack"))
    assert page.read(f"#{row} .al-state", lambda e: e.text) == "ack active"
    with plant.store() as s:
        a = next(a for a in s.alarms() if a.id == alarm)
    assert a.acked_by == plant.operator.name and a.acked_t is not None
    done = wait_for("the ALARM_ACK answer", lambda: plant.command_done(plant.operator.name, "ALARM_ACK"), 10.0)
    assert done[5].startswith("accepted"), done
    toast = f"#cmd-toast-{done[0]}"  # the command's outcome, as the page shows it
    result = page.wait("the command's answer shown", lambda d: page.read(toast, lambda e: e.get_attribute("data-result")))
    assert result == done[5] and "accepted" in page.read(toast, lambda e: str(e.get_attribute("class")))
    # the history (a server page) has it too
    page.open(f"/alarms?q={plant.operator.name}")
    assert plant.operator.name in page.driver.find_element(By.ID, f"alarm-history-{alarm}").text
    page.open("/alarms")
    page.wait(f"alarm {alarm} on the page", lambda d: page.present(row))
    shot("alarms")


# ---------------------------------------------------------------------------- 4. chute out of service
def test_chute_out_of_service_gets_no_parcels_then_back(plant: Plant, page: Page, shot: Shot) -> None:
    chute = _busiest_chute(plant)
    logged_in(page, plant.operator.name, plant.operator.password)
    page.open("/chutes")
    page.wait_live("chutes")
    assert page.attr(f"chute-{chute}", "data-out") == "0"
    page.click(f"chute-{chute}")
    page.wait("the chute dialog", lambda d: page.shown("chute-dialog"), 10.0)
    assert page.text("chute-dialog-state") == "In service"
    page.type("chute-reason", "browser test: bag change")
    page.click("chute-out")

    page.wait_text(f"chute-{chute}-status", lambda s: "OUT OF SERVICE" in s, "shows OUT OF SERVICE")
    assert page.attr(f"chute-{chute}", "data-out") == "1"
    done = wait_for("the CHUTE_OUT answer", lambda: plant.command_done(plant.operator.name, "CHUTE_OUT"), 15.0)
    assert done[5] == f"accepted: chute {chute} out of service", done
    with plant.store() as s:
        t_out = max(t for t, _, name, code, _ in s.unit_events("chute") if name == "chute_out" and code == chute)
        assert str(chute) in s.status().chutes_out

    siblings = _siblings(chute)

    def routed_since() -> tuple[int, int] | None:
        rows = plant.rows("SELECT chute, COUNT(*) FROM parcel_events WHERE kind='routed' AND t > ? GROUP BY chute",
                          (t_out,))
        to_it = sum(n for c, n in rows if c == chute)
        assert to_it == 0, f"{to_it} parcels routed to chute {chute} after it went out of service"
        others = sum(n for c, n in rows if c != chute)
        near = sum(n for c, n in rows if c in siblings)
        return (others, near) if others >= 25 and near >= 2 else None

    wait_for(f"parcels routed to other chutes (some to {sorted(siblings)}) with {chute} out", routed_since, 60.0, 1.0)
    assert page.attr(f"chute-{chute}", "data-out") == "1"
    sorted_since = plant.rows("SELECT COUNT(*) FROM parcel_events WHERE kind='sorted' AND t > ?", (t_out,))[0][0]
    assert sorted_since > 0
    shot("chutes")

    before = plant.last_command_id()
    page.click(f"chute-{chute}")
    page.wait("the chute dialog", lambda d: page.shown("chute-dialog"), 10.0)
    assert page.text("chute-dialog-state").startswith(f"Out of service ({plant.operator.name}:")
    page.click("chute-in")
    page.wait_text(f"chute-{chute}-status", lambda s: "OUT OF SERVICE" not in s, "back in service")
    done = wait_for("the CHUTE_IN answer", lambda: plant.command_done(plant.operator.name, "CHUTE_IN", before), 15.0)
    assert done[5] == f"accepted: chute {chute} back in service", done
    with plant.store() as s:
        assert str(chute) not in s.status().chutes_out


# ---------------------------------------------------------------------------- 5. sort plan
def test_sort_plan_bad_refused_good_activated_traced_rolled_back(
        plant: Plant, page: Page, shot: Shot, tmp_path: Path) -> None:
    bad_text, bad_line = _plan_with("IE default", "99")
    bad = tmp_path / "bad-plan.csv"
    bad.write_text(bad_text, encoding="utf-8")
    good_text, _ = _plan_with("IE default", "11|13")
    good = tmp_path / "tonight.csv"
    good.write_text(good_text, encoding="utf-8")

    logged_in(page, plant.engineer.name, plant.engineer.password)
    page.open("/plan")
    page.wait_live("plans")
    v0 = _active_version(page)
    with plant.store() as s:
        versions = [(p.version, p.state) for p in s.plans()]
    assert (v0, "active") in versions

    # a bad plan: the error with its file line; nothing changes
    page.find("plan-file").send_keys(str(bad))
    page.click("plan-validate")
    err = page.wait_text("plan-error", lambda s: bool(s), "shows the plan's error")
    assert f"bad-plan.csv:{bad_line}" in err and "chute 99 is not in the site" in err, err
    assert not page.enabled("plan-activate")
    assert _active_version(page) == v0
    with plant.store() as s:
        assert [(p.version, p.state) for p in s.plans()] == versions
    assert plant.command_done(plant.engineer.name, "PLAN_ACTIVATE") is None

    # a good plan: preview, activate, the new version routes
    page.find("plan-file").send_keys(str(good))
    page.click("plan-validate")
    summary = page.wait_text("plan-summary", lambda s: "valid" in s and "What-if" in s, "shows the preview", 60.0)
    assert "tonight.csv" in summary
    assert not page.shown("plan-error")
    assert page.all("#plan-preview-chutes tr"), "no chutes in the preview"
    assert page.all("#plan-preview-chart svg path.ch-line"), "no preview chart"
    shot("plan")
    page.click("plan-activate")
    page.confirm()
    v1 = number(page.wait_text("plan-active-version", lambda s: number(s.split()[0]) != v0,
                               "shows the new version", 60.0).split()[0])
    assert v1 > v0
    assert page.text("plan-active-source") == "tonight.csv"
    done = wait_for("the PLAN_ACTIVATE answer", lambda: plant.command_done(plant.engineer.name, "PLAN_ACTIVATE"), 30.0)
    assert done[5].startswith("accepted"), done
    with plant.store() as s:
        active = [p for p in s.plans() if p.state == "active"]
    assert [p.version for p in active] == [v1] and active[0].user == plant.engineer.name
    assert active[0].plan_csv == good_text

    def decided() -> tuple[int, int] | None:
        got = plant.rows("SELECT boot_id, tracking_id FROM parcel_events WHERE kind='routed' AND plan_version=?"
                         " ORDER BY id LIMIT 1", (v1,))
        return (int(got[0][0]), int(got[0][1])) if got else None

    boot, tracking = wait_for(f"a parcel routed by plan version {v1}", decided, 30.0)
    page.open("/trace")
    page.type("trace-q", f"{boot}:{tracking}")
    page.click("trace-submit")
    page.wait("the traced parcel", lambda d: page.present("trace-parcel"), 15.0)
    assert page.text("trace-plan-version") == str(v1)
    plan_col = [r.find_elements(By.TAG_NAME, "td")[7].text for r in page.all(f"{tid('trace-events')} tr.ev-routed")]
    assert plan_col and plan_col[0] == str(v1), plan_col
    stored = plant.rows("SELECT plan_version FROM parcel_events WHERE boot_id=? AND tracking_id=? AND kind='routed'"
                        " ORDER BY id LIMIT 1", (boot, tracking))
    assert stored == [(v1,)]

    # roll back: the version it replaced routes again
    before = plant.last_command_id()
    page.open("/plan")
    page.click("plan-rollback")
    page.confirm()
    page.wait_text("plan-active-version", lambda s: number(s.split()[0]) == v0, f"back on version {v0}", 60.0)
    done = wait_for("the PLAN_ROLLBACK answer",
                    lambda: plant.command_done(plant.engineer.name, "PLAN_ROLLBACK", before), 30.0)
    assert done[5].startswith("accepted"), done
    with plant.store() as s:
        assert [p.version for p in s.plans() if p.state == "active"] == [v0]


# ---------------------------------------------------------------------------- 6. parcel trace
def test_trace_a_parcel_by_barcode_and_tracking_id(plant: Plant, page: Page, shot: Shot) -> None:
    with plant.store() as s:
        parcel = next(p for p in reversed(s.parcels()) if p.final and p.state == "sorted" and p.identity)
        kinds = [e[2] for e in s.parcel_events(parcel.tracking_id, parcel.boot_id)]
    assert "routed" in kinds and kinds[-1] == "sorted", kinds
    logged_in(page, plant.viewer.name, plant.viewer.password)
    page.open("/trace")
    page.type("trace-q", parcel.identity)
    page.click("trace-submit")
    page.wait("the traced parcel", lambda d: page.present("trace-parcel"), 15.0)
    article = page.driver.find_element(By.ID, f"trace-parcel-{parcel.boot_id}-{parcel.tracking_id}")
    assert article.find_element(By.CSS_SELECTOR, tid("trace-identity")).text == parcel.identity
    assert article.find_element(By.CSS_SELECTOR, tid("trace-outcome")).text == "sorted"
    assert article.find_element(By.CSS_SELECTOR, tid("trace-chute")).text == str(parcel.chute)
    shown = [r.find_elements(By.TAG_NAME, "td")[2].text
             for r in article.find_elements(By.CSS_SELECTOR, f"{tid('trace-events')} tr")]
    assert shown == kinds
    shot("trace")

    page.type("trace-q", f"{parcel.boot_id}:{parcel.tracking_id}")
    page.click("trace-submit")
    page.wait("the trace by tracking id", lambda d: f"q={parcel.boot_id}" in page.path and page.present("trace-parcel"))
    assert page.all("[data-testid=trace-parcel]")[0].get_attribute("id") == (
        f"trace-parcel-{parcel.boot_id}-{parcel.tracking_id}")

    page.type("trace-q", "XX000000000XX")
    page.click("trace-submit")
    page.wait_text("trace-none", lambda s: "No parcel matches" in s, "says nothing matches")


# ---------------------------------------------------------------------------- 7. trends, who did what
def test_trends_draw_the_run_and_the_overview_lists_who_did_what(plant: Plant, page: Page, shot: Shot) -> None:
    logged_in(page, plant.operator.name, plant.operator.password)
    page.open("/trends")
    page.wait_text("trend-updated", lambda s: s.lower().startswith("updated"), "loaded")
    page.click("trend-hours-1")
    page.wait("the 1 h span chosen", lambda d: "active" in page.attr("trend-hours-1", "class"))
    # The parcel charts have a point per *complete* minute, and the page reloads when a minute
    # ends: a run younger than its first complete minute (the plant starts with this module)
    # draws them only after the next minute boundary, up to 60 s away.
    for chart, within_s in (("chart-throughput", 80.0), ("chart-recirc", 20.0), ("chart-decision", 20.0),
                            ("chart-lag", 20.0)):
        lines = f"{tid(chart)} path.ch-line, {tid(chart)} circle"  # a point alone is a circle
        page.wait(f"a line in {chart}", lambda d: page.all(lines), within_s)  # noqa: B023 (waited on here)
    shot("trends")

    # the overview's recent commands are the store's: every command with the user who sent it
    page.open("/overview")
    page.wait_live("commands")
    with plant.store() as s:
        want = [(str(i), c, u) for i, _, c, u, _, _ in s.commands(12)]

    def shown() -> list[tuple[str, str, str]]:
        rows = []
        for r in page.all(f"{tid('commands-body')} tr"):
            tds = r.find_elements(By.TAG_NAME, "td")
            rows.append((tds[0].text, tds[2].text, tds[3].text))
        return rows
    page.wait(f"the recent commands {want}", lambda d: shown() == want, 10.0)
    shot("overview")
