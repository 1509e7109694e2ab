"""One training step under MirroredStrategy on 2 logical CPUs against one device.

`single_and_mirrored(tmp_path, "test_module", "build_and_data")` runs, in a fresh process
(logical devices must be configured before TensorFlow starts), the function
`build_and_data()` of a test module twice: under `OneDeviceStrategy` and under
`MirroredStrategy` over two logical CPUs. That function builds and compiles a model (in
the active strategy's scope) and returns `(model, x, y)`; each model then trains one
epoch on its batch, which is one step. Returns `{"single": run, "mirrored": run}`, each
run `{"logs": {metric: value}, "weights": [...], "names": [...]}`.
"""

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import bayes_larq as bl
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    build_and_data = getattr(__import__(sys.argv[2]), sys.argv[3])

    def one_step(strategy):
        with strategy.scope():
            model, x, y = build_and_data()
        history = model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0).history
        return {"logs": {key: values[0] for key, values in history.items()},
                "weights": [np.asarray(v.numpy()).tolist() for v in model.weights],
                "names": [v.name for v in model.weights]}

    single = one_step(tf.distribute.OneDeviceStrategy("/cpu:0"))
    mirrored = one_step(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    print(json.dumps({"single": single, "mirrored": mirrored}))
""")


def single_and_mirrored(tmp_path, module, function):
    script = tmp_path / "mirrored.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, str(script), os.path.dirname(__file__), module, function],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
