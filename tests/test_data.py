"""Loading the shipped EHT M87* 2017 uvfits files, and clear errors for every kind of bad file."""
import dataclasses
import functools
import itertools
import os
import shutil

import numpy as np
import pytest
from astropy.io import fits
from conftest import m87_file

from vlbicore.data import (MIN_SEGMENT_SECONDS, Observation, average_scans, ehtim, load_prepared, load_uvfits, quiet,
                           save_prepared, save_uvfits, segment_scans, to_ehtim)
from vlbicore.data.averaging import split_scan
from vlbicore.data.simulate import simulate_observation
from vlbicore.errors import VlbiError
from vlbicore.units import RAD_PER_UAS

SMALL = m87_file(100, "lo")  # the smallest file (2367 records): used for all the corrupted copies
ALL_FILES = [m87_file(day, band) for day in (95, 96, 100, 101) for band in ("hi", "lo")]
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


def test_one_row_per_baseline_and_time_stamp_and_time_stamps_nested_in_scans():
    obs = cached(m87_file(101, "lo"))
    assert len(np.unique(obs.scan)) == 22
    assert len(set(zip(obs.time, obs.ant1, obs.ant2))) == len(obs)
    # a time stamp is one segment of one scan; a scan holds one or more time stamps
    times, first = np.unique(obs.time, return_index=True)
    assert len(set(zip(obs.time, obs.scan))) == len(times)
    assert np.all(np.diff(obs.scan[first]) >= 0) and 22 < len(times) < 2 * 22


def test_scan_average_is_the_coherent_mean_over_the_segment_with_sigma_over_sqrt_n():
    averaged = cached(m87_file(101, "lo"))
    raw = cached(m87_file(101, "lo"), scan_average=False)
    assert len(raw) > 20 * len(averaged)
    row_of = segment_scans(raw).row  # the averaged row each raw record went into (-1: dropped)
    for row in range(len(averaged)):
        used = row_of == row
        n = used.sum()
        assert n >= 1 and len(set(zip(raw.ant1[used], raw.ant2[used], raw.scan[used]))) == 1
        assert (raw.ant1[used][0], raw.ant2[used][0], raw.scan[used][0]) == (
            averaged.ant1[row], averaged.ant2[row], averaged.scan[row])
        assert averaged.vis[row] == pytest.approx(raw.vis[used].mean(), rel=1e-9)
        assert averaged.u[row] == pytest.approx(raw.u[used].mean(), rel=1e-12)
        assert averaged.sigma[row] == pytest.approx(np.sqrt(np.sum(raw.sigma[used] ** 2)) / n, rel=1e-9)
        assert averaged.time[row] == pytest.approx(raw.time[used].mean(), abs=1e-12)
    # every record of a segment's integrations of a kept baseline is used: none dropped silently
    assert np.sum(row_of < 0) == averaged.flag_counts["segment_incomplete"] > 0


@functools.lru_cache(maxsize=None)
def averaged_and_raw(path):
    raw = cached(path, scan_average=False)
    return average_scans(raw), raw


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name[8:18])
def test_every_closure_triangle_closes_in_uv_after_averaging(path):
    """Issue 12 item 8: with each baseline averaged over its own part of a scan, triangles missed
    closing by up to 53 Mλ (096); rows of one time stamp now share their integrations. What is left is
    the raw records' own misclosure (partial integrations: 0.2-0.85 Mλ per 10-s record), averaged down."""
    obs = cached(path)
    worst, n_triangles = 0.0, 0
    for time in np.unique(obs.time):
        rows = np.flatnonzero(obs.time == time)
        edge = {}
        for r in rows:
            edge[(obs.ant1[r], obs.ant2[r])] = (r, 1.0)
            edge[(obs.ant2[r], obs.ant1[r])] = (r, -1.0)
        stations = sorted(set(obs.ant1[rows]) | set(obs.ant2[rows]))
        for a, b, c in itertools.combinations(stations, 3):
            legs = [edge.get(pair) for pair in ((a, b), (b, c), (c, a))]
            if None in legs:
                continue
            u = sum(sign * obs.u[r] for r, sign in legs)
            v = sum(sign * obs.v[r] for r, sign in legs)
            worst, n_triangles = max(worst, np.hypot(u, v)), n_triangles + 1
    assert n_triangles > 50
    assert worst < 0.5e6  # λ; measured 0.018-0.077 Mλ (was 0.02-53 Mλ)


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name[8:18])
def test_segment_averaging_keeps_at_least_99_percent_of_the_weight(path):
    averaged, raw = averaged_and_raw(path)
    segments = segment_scans(raw)
    weight = 1.0 / raw.sigma ** 2
    assert weight[segments.row >= 0].sum() / weight.sum() >= 0.99  # measured 0.9978-1
    assert averaged.flag_counts["segment_incomplete"] == segments.dropped == np.sum(segments.row < 0)
    assert cached(path).flag_counts["segment_incomplete"] == segments.dropped
    assert segments.n_segments == len(np.unique(averaged.time)) and len(averaged) == len(segments.time)


def _station_track(n_stations, seconds):
    """Per station a (u, v)-like position that moves fast (1e9 λ per 100 s): records close exactly."""
    phase = 2 * np.pi * np.arange(n_stations)[:, None] / n_stations + seconds[None, :] / 100.0
    radius = 2e9 * (1 + np.arange(n_stations))[:, None]
    return radius * np.cos(phase), radius * np.sin(phase)


def test_a_baseline_dropping_out_mid_scan_splits_the_scan_and_each_segment_shares_its_times(tmp_path):
    """Three 360-s scans of 4 stations (10-s integrations): in scan 0 S3 leaves after 150 s; in scan 1
    baseline S0-S1 misses 2 integrations in mid-scan; in scan 2 S3 is there for the first 30 s only."""
    seconds_per_scan = 10.0 * np.arange(36)
    records = []  # (scan, integration, ant1, ant2)
    for scan, k, (a, b) in itertools.product(range(3), range(36), itertools.combinations(range(4), 2)):
        if scan == 0 and 3 in (a, b) and k >= 15:
            continue
        if scan == 1 and (a, b) == (0, 1) and k in (17, 18):
            continue
        if scan == 2 and 3 in (a, b) and k >= 3:
            continue
        records.append((scan, k, a, b))
    scan, k, ant1, ant2 = (np.array(x) for x in zip(*records))
    seconds = 3600.0 + scan * 1200.0 + seconds_per_scan[k]  # scans 14 min apart
    x, y = _station_track(4, seconds)
    n = len(records)
    index = np.arange(n)
    u, v = x[ant1, index] - x[ant2, index], y[ant1, index] - y[ant2, index]
    rng = np.random.default_rng(0)
    raw = Observation(path="<synthetic>", sha256="", source="X", date="2017-04-11", band="lo", frequency=227e9,
                      stations=("S0", "S1", "S2", "S3"), u=u, v=v,
                      vis=np.exp(1j * rng.uniform(-np.pi, np.pi, n)), sigma=np.ones(n), time=seconds / 3600.0,
                      ant1=ant1, ant2=ant2, scan=scan, flag_counts={}, ra=12.5, dec=12.4, mjd=57854,
                      bandwidth=2e9, tint=np.full(n, 10.0))
    obs = load_uvfits(save_uvfits(raw, tmp_path / "dropout.uvfits"))
    # scan 0: [0, 150 s) with 6 baselines + [150, 360 s) with 3; scan 1: S0-S1 left out of one 60-s
    # segment around its gap (4 of its records dropped); scan 2: S3's 30 s are too short (9 records)
    assert [len(np.unique(obs.time[obs.scan == s])) for s in range(3)] == [2, 3, 1]
    assert obs.flag_counts["segment_incomplete"] == 4 + 9
    assert len(np.unique(obs.time)) == 6  # time stamps are distinct between segments
    for time in np.unique(obs.time):
        rows = obs.time == time
        # sigma = 1 / sqrt(n): every row of a time stamp averaged the same number of integrations
        np.testing.assert_allclose(obs.sigma[rows], obs.sigma[rows][0], rtol=1e-6)
        n_int = round(1.0 / obs.sigma[rows][0] ** 2)
        assert n_int * 10.0 >= MIN_SEGMENT_SECONDS
    # ... and the same integrations: the (u, v) of every closure close (to float32 storage)
    products_uv = []
    for time in np.unique(obs.time):
        rows = np.flatnonzero(obs.time == time)
        pos = {(obs.ant1[r], obs.ant2[r]): (obs.u[r], obs.v[r]) for r in rows}
        pos.update({(b, a): (-uu, -vv) for (a, b), (uu, vv) in list(pos.items())})
        for a, b, c in itertools.combinations(range(len(obs.stations)), 3):
            if all(p in pos for p in ((a, b), (b, c), (c, a))):
                products_uv.append(np.hypot(*np.sum([pos[(a, b)], pos[(b, c)], pos[(c, a)]], axis=0)))
    # triangles per time stamp: all 4 stations 4, without S3 1, without S0-S1 2
    assert len(products_uv) == (4 + 1) + (4 + 2 + 4) + 1
    assert max(products_uv) < 1e4  # λ; each baseline's own mean would miss by ~1e9 λ
    # the time stamp of a segment is the mean of its integration times (scan 0, first segment)
    assert np.unique(obs.time[obs.scan == 0])[0] == pytest.approx((3600.0 + 70.0) / 3600.0, abs=1e-6)


def test_split_scan_keeps_the_most_weight_in_segments_of_at_least_the_minimum_length():
    seconds = 9.9984 * np.arange(12)  # EHT integrations are 9.998 s apart: 6 of them count as 60 s
    present = np.ones((3, 12), bool)
    present[2, 6:] = False  # baseline 2 ends after 6 integrations
    weight = np.where(present, 1.0, 0.0)
    assert split_scan(present, weight, seconds, 60.0) == [(0, 6), (6, 12)]
    assert split_scan(present, weight, seconds, 0.0) == [(0, 6), (6, 12)]
    # 70 s: no split has both parts long enough, so the whole scan without baseline 2
    assert split_scan(present, weight, seconds, 70.0) == [(0, 12)]
    # a scan shorter than the minimum is one segment; equal weight: the fewest segments
    assert split_scan(np.ones((3, 4), bool), np.ones((3, 4)), seconds[:4], 60.0) == [(0, 4)]
    assert split_scan(np.ones((3, 12), bool), np.ones((3, 12)), seconds, 0.0) == [(0, 12)]
    # through load_uvfits: a longer minimum keeps less of 096 hi, where APEX leaves scans early
    path = m87_file(96, "hi")
    strict = cached(path, min_segment_seconds=1e6)  # one segment per scan
    assert len(np.unique(strict.time)) == len(np.unique(strict.scan)) == 25
    assert strict.flag_counts["segment_incomplete"] > cached(path).flag_counts["segment_incomplete"]
    with pytest.raises(VlbiError, match="min_segment_seconds") as info:
        load_uvfits(SMALL, min_segment_seconds=-1.0)
    assert "\n" not in str(info.value)


def test_closure_phases_of_an_offset_model_do_not_depend_on_the_offset(tmp_path):
    """A noiseless model 40 µas off the phase centre: the offset is a phase gradient that closes only
    where the loop's (u, v) close. Averaging each baseline over its own part of a scan gave up to 0.069
    rad of offset-dependent closure phase on 096 hi (52 Mλ); averaging over shared integrations leaves
    the curvature of the tracks within a segment (measured 5.5e-4 rad)."""
    def model(x0, y0):
        def visibility(u, v):
            ring = 0.6 * np.sinc(np.hypot(u, v) * 42 * RAD_PER_UAS)  # any asymmetric model will do
            spot = 0.2 * np.exp(2j * np.pi * (u * 15 + v * 5) * RAD_PER_UAS)
            return (ring + spot) * np.exp(2j * np.pi * (u * x0 + v * y0) * RAD_PER_UAS)
        return visibility
    like = m87_file(96, "hi")
    centred = load_uvfits(simulate_observation(model(0, 0), like=like, noise=False, out=tmp_path / "c.uvfits").path)
    offset = load_uvfits(simulate_observation(model(40, -20), like=like, noise=False, out=tmp_path / "o.uvfits").path)
    np.testing.assert_array_equal(centred.time, offset.time)
    np.testing.assert_array_equal(centred.ant1, offset.ant1)
    from vlbicore.products import build_products  # the closure set of the centred model, on both
    cp = build_products(centred, "cphase")["cphase"]
    assert cp.n > 100

    def closure_phase(obs):
        return np.angle(np.prod(obs.vis[cp.rows] ** cp.signs, axis=1))
    change = np.angle(np.exp(1j * (closure_phase(offset) - closure_phase(centred))))
    assert np.max(np.abs(change)) < 1e-3
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
