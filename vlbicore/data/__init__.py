"""Data in: uvfits I/O, the analysis-ready ``Observation``, scan averaging, synthetic observations.

Owns everything between a file on disk and the ``Observation`` the data products are built from. May
import ``vlbicore.errors`` and ``vlbicore.units``; ``simulate`` takes the model as a callable, so this
package never imports models, products, likelihood, inference, store, survey or cli.
"""
from vlbicore.data.averaging import MIN_SEGMENT_SECONDS, Segmentation, average_scans, scan_ids, segment_scans
from vlbicore.data.observation import Observation, file_sha256, load_observation, load_prepared, save_prepared
from vlbicore.data.windows import Window, describe_spec, parse_spec, split_windows, window_observation
from vlbicore.data.uvfits import band_name, ehtim, load_uvfits, mjd_to_date, quiet, save_uvfits, to_ehtim

__all__ = [
    "MIN_SEGMENT_SECONDS", "Observation", "Segmentation", "average_scans", "band_name", "ehtim", "file_sha256",
    "load_observation", "load_prepared", "load_uvfits", "mjd_to_date", "quiet", "save_prepared", "save_uvfits",
    "scan_ids", "segment_scans", "to_ehtim", "Window", "describe_spec", "parse_spec", "split_windows",
    "window_observation",
]
