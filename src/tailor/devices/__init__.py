"""Connected-device personalization: a home's telemetry in, a learned schedule out.

The pieces, each in its own module:

- :mod:`~tailor.devices.features`: the time-of-week grid and features every model shares;
- :mod:`~tailor.devices.data`: telemetry and adjustments read from the event log;
- :mod:`~tailor.devices.quality`: cleaning irregular device readings onto that grid;
- :mod:`~tailor.devices.occupancy`: when the home is occupied;
- :mod:`~tailor.devices.schedule`: the preferred setpoint schedule learned from manual adjustments;
- :mod:`~tailor.devices.program`: the setpoint a programmed device will hold, with its habits;
- :mod:`~tailor.devices.thermal`: heat-up and cool-down rates, for pre-heating;
- :mod:`~tailor.devices.policy`: the decision (occupancy, comfort, eco, pre-heat, bounds);
- :mod:`~tailor.devices.model`: one home's model, fitted from all of the above;
- :mod:`~tailor.devices.service`: fitting every home and answering for the API and the CLI;
- :mod:`~tailor.devices.maintenance`: heating efficiency and sensor drift alerts;
- :mod:`~tailor.devices.edge`: the decision model in ONNX, run offline on the device;
- :mod:`~tailor.devices.federated`: the shared default model trained across homes with Flower;
- :mod:`~tailor.devices.mqtt`: telemetry over MQTT into the event store;
- :mod:`~tailor.devices.sensor_csv`: any labelled sensor CSV, for occupancy benchmarks.

Inside, temperatures are °C and times are UTC pandas timestamps.
"""
