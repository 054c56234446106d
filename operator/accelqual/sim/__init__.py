"""The embedded simulation: an emulated Kubernetes API server the real operator runs against.

`emulator.ClusterEmulator` is the API server (kmock-based, real HTTP); `server.EmulatorServer` runs it
on a local port in a background thread for `accelqual simulate` and the end-to-end tests.
"""
