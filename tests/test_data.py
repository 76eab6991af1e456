"""Loading the shipped EHT M87* 2017 uvfits files, and clear errors for every kind of bad file."""
import functools
import os
import shutil

import numpy as np
import pytest
from astropy.io import fits
from conftest import m87_file

from vlbicore.data import ehtim, load_prepared, load_uvfits, quiet, save_prepared, save_uvfits, to_ehtim
from vlbicore.errors import VlbiError

SMALL = m87_file(100, "lo")  # the smallest file (2367 records): used for all the corrupted copies
EHT_CODES = {"AA", "AP", "AZ", "JC", "LM", "PV", "SM"}


# loading through ehtim takes ~0.5 s a file: share the results across tests
cached = functools.lru_cache(maxsize=None)(load_uvfits)


def test_metadata_of_101_lo():
    obs = cached(m87_file(101, "lo"))
    assert (obs.source, obs.date, obs.band) == ("M87", "2017-04-11", "lo")
    assert obs.frequency == pytest.approx(227.0707e9, rel=1e-6)
    # sha256 from data/eht-m87-2017/SOURCE.md
    assert obs.sha256 == "697af2bb3bbf732115108ffefacd3e59e307f38fe685c3c4579146b0bd661298"
    assert set(obs.stations) == EHT_CODES and all(type(s) is str for s in obs.stations)
    n = len(obs)
    for name in ("u", "v", "vis", "sigma", "time", "ant1", "ant2", "scan"):
        assert getattr(obs, name).shape == (n,), name
    assert obs.vis.dtype == np.complex128 and obs.ant1.dtype.kind == "i"
    assert np.all(obs.ant1 != obs.ant2) and np.all(obs.sigma > 0) and np.all(np.isfinite(obs.vis))
    assert np.all(np.diff(obs.time) >= 0)
    assert obs.uvdist.min() > 1e9  # intra-site baselines (1e5-2e6 λ) are gone
    assert obs.flag_counts["intra_site"] > 0 and obs.flag_counts["bad_sigma"] == 0
    text = obs.summary()
    assert "SR1_M87_2017_101_lo" in text and "stations (7)" in text and "intra_site" in text


def test_one_timestamp_per_scan_and_one_row_per_baseline_and_scan():
    obs = cached(m87_file(101, "lo"))
    assert len(np.unique(obs.scan)) == 22
    for scan in np.unique(obs.scan):
        assert len(np.unique(obs.time[obs.scan == scan])) == 1
    baseline_scan = set(zip(obs.scan, obs.ant1, obs.ant2))
    assert len(baseline_scan) == len(obs)


def test_scan_average_is_the_coherent_mean_with_sigma_over_sqrt_n():
    averaged = cached(m87_file(101, "lo"))
    raw = cached(m87_file(101, "lo"), scan_average=False)
    assert len(raw) > 20 * len(averaged)
    checked = 0
    for row in range(0, len(averaged), 17):
        a, b = averaged.stations[averaged.ant1[row]], averaged.stations[averaged.ant2[row]]
        in_scan = ((raw.scan == averaged.scan[row]) & (np.asarray(raw.stations)[raw.ant1] == a)
                   & (np.asarray(raw.stations)[raw.ant2] == b))
        assert in_scan.sum() >= 1
        assert averaged.vis[row] == pytest.approx(raw.vis[in_scan].mean(), rel=1e-9)
        assert averaged.sigma[row] == pytest.approx(np.sqrt(np.sum(raw.sigma[in_scan] ** 2)) / in_scan.sum(),
                                                    rel=1e-9)
        assert averaged.time[row] == raw.time[raw.scan == averaged.scan[row]].min()
        checked += 1
    assert checked >= 10


def test_intra_site_baselines_kept_on_request_and_threshold_is_min_baseline():
    kept = cached(SMALL, drop_intra_site=False)
    dropped = cached(SMALL)
    short = kept.uvdist < 1e8
    labels = set(kept.baseline_labels[short])
    assert labels <= {"AA-AP", "AP-AA", "JC-SM", "SM-JC"} and labels
    assert len(kept) == len(dropped) + short.sum()
    assert kept.flag_counts["intra_site"] == 0
    # a threshold above the shortest inter-site baseline (~1.24e9 λ) also drops real baselines
    strict = load_uvfits(SMALL, min_baseline=2e9)
    assert strict.uvdist.min() >= 2e9 and len(strict) < len(dropped)


def test_band_from_frequency_when_the_name_does_not_say(tmp_path):
    copy = tmp_path / "m87_day100.uvfits"
    shutil.copy(SMALL, copy)
    obs = load_uvfits(copy)
    assert obs.band == "lo" and obs.date == "2017-04-10"


def test_save_uvfits_round_trips_through_ehtim_and_load_uvfits(tmp_path):
    obs = cached(SMALL)
    out = save_uvfits(obs, tmp_path / "copy.uvfits")
    with quiet():
        back_eh = ehtim().obsdata.load_uvfits(str(out), polrep="stokes")
    assert len(back_eh.data) == len(obs)
    back = load_uvfits(out)
    assert len(back) == len(obs) and back.stations == obs.stations
    # uvfits stores visibilities and weights as float32
    np.testing.assert_allclose(back.vis, obs.vis, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(back.sigma, obs.sigma, rtol=1e-5)
    np.testing.assert_allclose(back.u, obs.u, rtol=1e-6)
    assert len(to_ehtim(obs).data) == len(obs)


# --- bad input: every case is a one-line VlbiError naming the file, never an ehtim traceback -----


def _corrupt(tmp_path, name, edit):
    path = tmp_path / name
    with fits.open(SMALL) as hdul:
        edit(hdul)
        hdul.writeto(path)
    return path


def _empty(tmp_path):
    path = tmp_path / "empty.uvfits"
    path.write_bytes(b"")
    return path


def _truncated(tmp_path):
    path = tmp_path / "truncated.uvfits"
    data = SMALL.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _garbage(tmp_path):
    path = tmp_path / "garbage.uvfits"
    path.write_bytes(np.random.default_rng(0).bytes(6000))
    return path


def _image(tmp_path):
    path = tmp_path / "image.fits"
    fits.PrimaryHDU(np.zeros((8, 8))).writeto(path)
    return path


def _linear_feeds(tmp_path):  # STOKES codes -5..-8 = XX, YY, XY, YX: no Stokes I, RR or LL
    return _corrupt(tmp_path, "linear.uvfits", lambda h: h[0].header.set("CRVAL3", -5.0))


def _all_flagged(tmp_path):
    def edit(hdul):
        hdul[0].data["DATA"][..., 2] = 0.0
    return _corrupt(tmp_path, "flagged.uvfits", edit)


def _all_sigma_zero(tmp_path):  # infinite weights = zero sigmas
    def edit(hdul):
        hdul[0].data["DATA"][..., 2] = np.inf
    return _corrupt(tmp_path, "sigma0.uvfits", edit)


@pytest.mark.parametrize("make, expected", [
    (lambda t: t / "missing.uvfits", "file not found"),
    (lambda t: t, "not a regular file"),
    (_empty, "cannot be read as FITS"),
    (_truncated, "truncated"),
    (_garbage, "cannot be read as FITS"),
    (_image, "not a uvfits file"),
    (_linear_feeds, "no Stokes I"),
    (_all_flagged, "no usable rows"),
    (_all_sigma_zero, "no usable rows"),
])
def test_bad_files_raise_one_line_vlbi_error(tmp_path, make, expected):
    path = make(tmp_path)
    with pytest.raises(VlbiError) as info:
        load_uvfits(path)
    message = str(info.value)
    assert expected in message and str(path) in message and "\n" not in message
    assert ";" in message  # "<what is wrong>; <what to do>"
    assert info.value.__cause__ is None  # no chained ehtim/astropy traceback


def test_partly_bad_records_are_flagged_and_counted(tmp_path):
    def edit(hdul):
        data = hdul[0].data["DATA"]
        data[:100, ..., 0] = np.nan  # NaN visibilities (ehtim turns them into 0)
        data[100:150, ..., 2] = 0.0  # flagged (zero weight)
        data[150:160, ..., 2] = np.inf  # zero sigma
    path = _corrupt(tmp_path, "partly_bad.uvfits", edit)
    obs = load_uvfits(path)
    counts = obs.flag_counts
    assert counts["zero_weight"] == 50 and counts["bad_sigma"] == 10
    assert counts["bad_vis"] + counts["intra_site"] >= 100 and counts["bad_vis"] > 0
    assert np.all(obs.sigma > 0) and np.all(np.abs(obs.vis) > 0) and np.all(np.isfinite(obs.vis))
    assert str(counts["bad_vis"]) in obs.summary()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read files without read permission")
def test_unreadable_file(tmp_path):
    path = tmp_path / "secret.uvfits"
    shutil.copy(SMALL, path)
    path.chmod(0)
    with pytest.raises(VlbiError, match="not readable"):
        load_uvfits(path)


def test_prepared_npz_round_trip_and_checksum(tmp_path):
    obs = cached(SMALL)
    path = save_prepared(obs, tmp_path / "prepared.npz")
    back = load_prepared(path)
    assert (back.sha256, back.stations, back.flag_counts, back.date) == (obs.sha256, obs.stations,
                                                                         obs.flag_counts, obs.date)
    for name in ("u", "v", "vis", "sigma", "time", "ant1", "ant2", "scan", "station_xyz", "tint"):
        np.testing.assert_array_equal(getattr(back, name), getattr(obs, name))
    assert back.summary() == obs.summary()
    # a damaged prepared file is refused, not silently used
    with np.load(path) as npz:
        contents = {name: npz[name] for name in npz.files}
    contents["vis"] = contents["vis"] * 1.01
    np.savez(tmp_path / "edited.npz", **contents)
    with pytest.raises(VlbiError, match="checksum"):
        load_prepared(tmp_path / "edited.npz")
    with pytest.raises(VlbiError, match="not found"):
        load_prepared(tmp_path / "missing.npz")
