"""`digitlab info`: what this machine is and what digitlab will do on it, in one place, for a person or a script.

The device, the CPU's capability and threads, the precision `auto` picks and why (digitlab.hardware), and which
data sets are found: the MNIST shipped in the package, $DIGITLAB_DATA, and Debian's Fashion-MNIST.
"""

from __future__ import annotations

import os
from pathlib import Path

from .data.catalogue import known_set_at
from .data.mnist import SHIPPED_DATA
from .hardware import describe_machine, machine_class

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")  # apt-get install dataset-fashion-mnist


def data_sets() -> list[dict]:
    """Each candidate data folder, whether it is there, and which known set it holds (checksums, cached)."""
    places = [("shipped", SHIPPED_DATA), ("DIGITLAB_DATA", os.environ.get("DIGITLAB_DATA")),
              ("Debian's dataset-fashion-mnist", DEBIAN_FASHION)]
    found = []
    for source, folder in places:
        if not folder:
            continue
        folder = Path(folder)
        known = known_set_at(folder) if folder.is_dir() else None
        found.append({"source": source, "folder": str(folder), "present": folder.is_dir(),
                      "data_set": known.name if known else ("unknown or image folders" if folder.is_dir() else None)})
    return found


def machine_info(device: str = "auto") -> dict:
    """describe_machine's facts, the machine class a timing is filed under, and the data sets found."""
    facts = describe_machine(device)
    return {**facts, "machine_class": machine_class(facts), "data_sets": data_sets()}
