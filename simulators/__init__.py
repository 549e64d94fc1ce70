"""Virtual field sensors for the demo and the tests.

Physical scenarios (simulators/scenarios/*.yaml, models in `physics`) drive virtual devices that
speak the real protocols: Modbus TCP (`modbus_tcp`), Modbus RTU on a pseudo-terminal
(`modbus_rtu`) and ASCII lines on a pseudo-terminal (`ascii_serial`), encoded from the same
sensor profiles the edge decodes with (`encoding`).  `runner.SimulatorSet` starts them all and
knows the ground truth.  Nothing here imports pymodbus: the edge's client is tested against an
independent implementation.
"""
