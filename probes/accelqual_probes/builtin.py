"""The built-in check modules, listed explicitly: importing this module registers them all.

`CheckRegistry.load_builtins` imports it; a check module missing from this list is not
part of the product, and a test keeps this list and the catalog in step.
"""

from accelqual_probes.checks import (
    compatibility,
    function,
    general,
    inference,
    performance,
    reliability,
    security,
    training,
)

MODULES = (general, function, performance, compatibility, reliability, security, training, inference)
