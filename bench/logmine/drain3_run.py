"""Drain3 on Loghub-style CSVs, for scripts/bench-logmine.

For each CSV in DATA (a `Content` column), runs Drain3 with the masking and Drain settings
of Drain3's own example configuration (examples/drain3.ini: IP, HEX, NUM, ID and SEQ masks;
sim_th 0.4, depth 4, max_children 100, max_clusters 1024, extra delimiter "_"), writes each
line's cluster id to OUT/<set>.ids (one per line: Drain3 never merges clusters, so the id
returned at assignment is the final one), and prints one JSON object per set with the
mining speed: lines/s of `add_log_message` alone (messages already in memory), the best of
REPEAT runs, each with a fresh miner.
"""

import csv
import json
import pathlib
import sys
import time

from drain3 import TemplateMiner
from drain3.masking import MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig

# Drain3 0.9.11, examples/drain3.ini
MASKING = [
    (r"((?<=[^A-Za-z0-9])|^)(([0-9a-f]{2,}:){3,}([0-9a-f]{2,}))((?=[^A-Za-z0-9])|$)", "ID"),
    (r"((?<=[^A-Za-z0-9])|^)(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})((?=[^A-Za-z0-9])|$)", "IP"),
    (r"((?<=[^A-Za-z0-9])|^)([0-9a-f]{6,} ?){3,}((?=[^A-Za-z0-9])|$)", "SEQ"),
    (r"((?<=[^A-Za-z0-9])|^)([0-9A-F]{4} ?){4,}((?=[^A-Za-z0-9])|$)", "SEQ"),
    (r"((?<=[^A-Za-z0-9])|^)(0x[a-f0-9A-F]+)((?=[^A-Za-z0-9])|$)", "HEX"),
    (r"((?<=[^A-Za-z0-9])|^)([\-\+]?\d+)((?=[^A-Za-z0-9])|$)", "NUM"),
    (r"(?<=executed cmd )(\".+?\")", "CMD"),
]


def config():
    c = TemplateMinerConfig()
    c.masking_instructions = [MaskingInstruction(p, m) for p, m in MASKING]
    c.mask_prefix = "<:"
    c.mask_suffix = ":>"
    c.drain_sim_th = 0.4
    c.drain_depth = 4
    c.drain_max_children = 100
    c.drain_max_clusters = 1024
    c.drain_extra_delimiters = ["_"]
    c.profiling_enabled = False
    c.snapshot_interval_minutes = 0
    return c


def main():
    data, out, repeat = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), int(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(data.glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as f:
            messages = [row["Content"] for row in csv.DictReader(f)]
        miner = TemplateMiner(config=config())
        ids = [miner.add_log_message(m)["cluster_id"] for m in messages]
        (out / f"{path.stem}.ids").write_text("".join(f"{i}\n" for i in ids))
        best = float("inf")
        for _ in range(repeat):
            miner = TemplateMiner(config=config())
            started = time.perf_counter()
            for m in messages:
                miner.add_log_message(m)
            best = min(best, time.perf_counter() - started)
        print(json.dumps({
            "set": path.stem,
            "lines": len(messages),
            "templates": len(miner.drain.clusters),
            "lines_per_second": round(len(messages) / best),
        }))


if __name__ == "__main__":
    main()
