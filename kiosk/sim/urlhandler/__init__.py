"""pyserial URL handlers of the board emulator (pyserial imports `protocol_<scheme>` from here).

kiosk.sim.emulator_transports adds this package to `serial.protocol_handler_packages`.
"""
