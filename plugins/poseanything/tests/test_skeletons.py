"""Where the graph's skeletons come from: ``skeleton="annotation"`` reads the annotation file's
links as PoseAnything's code does (0-based, unchanged), beside the shipped tables of both MP-100
releases (``"updated"``, the presets' choice) and the base-detecting ``"file"``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from posecore_poseanything.transformer import skeleton_adjacency

from posecore.data._mp100 import MP100Dataset, mp100_categories, write_example


def test_annotation_skeletons_are_the_files_links_as_written(tmp_path: Path) -> None:
    """The example file holds one 0-based skeleton (stool) and one 1-based (starfish, K = 5, links
    1-2 .. 1-5). Read as written, the starfish keeps 1-2, 1-3 and 1-4, and its link to index 5,
    which in the released code only reaches a padded, masked slot of the 100, is dropped and noted;
    ``"file"`` instead tells the base and shifts it."""
    args = write_example(tmp_path)
    with pytest.warns(UserWarning, match=r"1 skeleton link\(s\) to a keypoint index outside 0..K-1"):
        as_written = MP100Dataset(**args, skeleton="annotation")
    assert as_written.category_metas[7].skeleton == ((0, 1), (1, 2), (2, 3), (3, 4))
    assert as_written.category_metas[3].skeleton == ((1, 2), (1, 3), (1, 4))
    shifted = MP100Dataset(**args, skeleton="file")
    assert shifted.category_metas[3].skeleton == ((0, 1), (0, 2), (0, 3), (0, 4))


def test_a_dropped_link_is_what_the_released_padding_makes_of_it() -> None:
    """Released code: a link to slot K of 100 lands on a padded slot, which the mask removes before
    the rows are normalised. The adjacency over the K real keypoints is then the one without it."""
    k, slots = 5, 100
    with_pad_link = skeleton_adjacency([[(1, 2), (1, 3), (1, 4), (1, 5)]], torch.arange(slots)[None] < k)
    without = skeleton_adjacency([[(1, 2), (1, 3), (1, 4)]], torch.ones(1, k, dtype=torch.bool))
    assert torch.equal(with_pad_link[:, :, :k, :k], without)


def test_the_shipped_updated_table_is_connected_and_zero_based_for_the_clothes() -> None:
    """The finding recorded in the README: the shipped ``skeleton_updated`` table (equal, category
    for category, to the PoseAnything-release files in patrickuibk/groundingpose) gives every
    DeepFashion2 category a connected, 0-based skeleton over all of its keypoints."""
    clothes = [c for c in mp100_categories().values() if c["supercategory"] == "clothes"]
    assert len(clothes) == 13
    for category in clothes:
        k, links = category["num_keypoints"], category["skeleton_updated"]
        assert all(0 <= i < k for link in links for i in link), category["name"]
        reached, frontier = {0}, [0]
        while frontier:
            node = frontier.pop()
            for a, b in links:
                for here, there in ((a, b), (b, a)):
                    if here == node and there not in reached:
                        reached.add(there)
                        frontier.append(there)
        assert reached == set(range(k)), f"{category['name']}: skeleton not connected"
