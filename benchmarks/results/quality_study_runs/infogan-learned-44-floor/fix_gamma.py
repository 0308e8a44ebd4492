"""fix_gamma.py POINT_JSON SNAPSHOT_KERAS: rewrite a `learned` quality point's
gamma_squared with the snapshot's own gamma^2 (exp(2 log_gamma)). Points
written before 6704791 held running_mse (the MSE monitor) there instead; the
old value is kept as running_mse_monitor."""

import json
import sys

import keras

from vae_balance.workdir import load_checkpoint

point_path, snapshot = sys.argv[1:3]
point = json.load(open(point_path))
vae = load_checkpoint(snapshot)
point["running_mse_monitor"] = point["gamma_squared"]
point["gamma_squared"] = float(keras.ops.convert_to_numpy(vae.gamma)) ** 2
point["gamma_squared_note"] = "from the snapshot (fix_gamma.py)"
json.dump(point, open(point_path, "w"), indent=2)
print(point_path, point["running_mse_monitor"], "->", point["gamma_squared"])
