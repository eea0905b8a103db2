"""The synthetic linked collection (vcd.synth.collection): valid tifxyz, links equal to the known truth,
and vcd's own linker finds the same overlaps for a patch dropped in later."""

import numpy as np
import pytest

from vcd.formats.overlaps import link_sets
from vcd.formats.tifxyz import read_surface
from vcd.formats.volpkg import list_patches, open_volpkg
from vcd.grow.linking import PatchIndex, link_new_patch
from vcd.synth.collection import generate_collection, load_collection, overlap_pairs


def _brute_pairs(origins, cells):
    o = np.asarray(origins)
    d = np.abs(o[:, None, :] - o[None, :, :]).max(-1)
    i, j = np.nonzero(np.triu(d <= cells - 1, 1))
    return set(zip(i.tolist(), j.tolist()))


@pytest.mark.parametrize("seed", [3, 11])
def test_overlap_pairs_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    cells = int(rng.choice([3, 5, 9, 13]))
    sites = rng.choice(40 * 30, size=200, replace=False)
    origins = 2 * np.stack([sites // 30, sites % 30], 1)
    assert set(map(tuple, overlap_pairs(origins, cells).tolist())) == _brute_pairs(origins, cells)


@pytest.mark.parametrize("seed", [0, 7])
def test_generated_collection_is_valid_and_linked_to_truth(tmp_path, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(150, 260))
    step = float(rng.uniform(4.0, 20.0))
    c = generate_collection(tmp_path / "c.volpkg", n, mean_links=float(rng.uniform(6, 18)), height_cells=60,
                            step=step, seed=seed)
    open_volpkg(c.volpkg)  # a volpkg VC3D/vcd opens
    patches = list_patches(c.paths)
    assert sorted(d.name for d, _ in patches) == sorted(c.names)  # every one is a patch by VC3D's rule
    s = read_surface(c.paths / c.names[0])
    assert s.points.shape == (c.cells + 1, c.cells + 1, 3) and s.valid.all()
    assert np.allclose(s.scale, 1.0 / step, rtol=1e-6)
    assert s.meta["bbox"][0][2] > 0
    truth = c.links()
    assert {k: v for k, v in link_sets(c.paths).items() if v} == {k: v for k, v in truth.items() if v}
    assert 0 < 2 * len(c.pairs) / n
    back = load_collection(c.volpkg)
    assert set(map(tuple, back.pairs.tolist())) == {tuple(sorted((back.names.index(c.names[i]),
                                                                  back.names.index(c.names[j])))) for i, j in c.pairs}

    # vcd's linker agrees with the truth: new patches dropped in at random free places
    index = PatchIndex(c.paths)
    for k in range(4):
        u, v = c.free_origin(rng)
        name = f"auto_grown_synth_new{k}"
        want = c.add_patch(name, u, v)
        assert sorted(link_new_patch(c.paths, name, index=index.refresh())) == want
        assert link_sets(c.paths).get(name, set()) == set(want)
    assert {k: v for k, v in link_sets(c.paths).items() if v} == {k: v for k, v in c.links().items() if v}
