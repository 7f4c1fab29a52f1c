"""What the controller and the PLCs (real or simulated) agree on: the site layout, the tag map,
the numbers on the wire and how values are packed into registers.

The controller (`control/`) and the simulator (`plc_sim/`) both import this package and never
each other, so a change to the interface is made once and both sides move with it.
"""
