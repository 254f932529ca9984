"""A plain zarr-python user decodes a teacher store from its own attributes (issue 16, "Zarr readability"):
each coded array says how it decodes, and that decode, written here from the attributes' text alone
(no vpmoe code), gives the reader's ids and log-probs."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from vpmoe.teacher.store import SHARDS
from vpmoe.teacher.store_reader import TeacherStoreReader
from vpmoe.utils import storage


@pytest.fixture(params=["local", "s3"])
def store_location(request, small_dataset, scored_store):
    """(store path or URL, zarr storage_options): the session's store, or the same files on the S3 server."""
    if request.param == "local":
        return str(scored_store), None
    server, bucket = request.getfixturevalue("s3_server"), request.getfixturevalue("s3_bucket")
    url = f"{bucket}/store"
    for key in storage.find(scored_store / SHARDS):
        storage.put_file(scored_store / SHARDS / key, f"{url}/{SHARDS}/{key}")
    storage.put_file(scored_store / "zarr.json", f"{url}/zarr.json")
    return url, {"endpoint_url": server.endpoint_url}


def test_plain_zarr_plus_the_recorded_decode_equals_the_reader(small_dataset, scored_store, store_location):
    url, options = store_location
    kw = {"storage_options": options} if options else {}
    root = zarr.open_group(url, mode="r", **kw)
    vocab = root.attrs["tokenizer"]["padded_vocab_size"]
    reader = TeacherStoreReader(small_dataset, scored_store)
    for stem in reader.stems:
        group = zarr.open_group(f"{url}/{SHARDS}/{stem}", mode="r", **kw)
        codes_arr, deltas_arr = group["topk_id_codes"], group["topk_logprob_deltas"]
        assert codes_arr.attrs["vpmoe_coding"]["transform"] == "id_order_codes"
        assert codes_arr.attrs["vpmoe_coding"]["table"] == "id_order"
        assert deltas_arr.attrs["vpmoe_coding"]["transform"] == "fp16_bit_deltas_along_k"
        order = group["id_order"][:].astype(np.int64)
        codes = codes_arr[:].astype(np.int64)
        # "a code c < n is id_order[c]; a code c >= n is the (c - n)-th id of [0, vocab) not in id_order"
        rest = np.setdiff1d(np.arange(vocab), order)  # ascending
        n = len(order)
        ids = np.where(codes < n, order[np.minimum(codes, n - 1)], rest[np.maximum(codes - n, 0)])
        # "cumsum(deltas, axis=1) modulo 2**16 as uint16, viewed as float16"
        logprobs = np.cumsum(deltas_arr[:], axis=1, dtype=np.uint16).view(np.float16)
        rows = reader.read_shard(stem)
        np.testing.assert_array_equal(ids, rows.topk_ids, err_msg=stem)
        np.testing.assert_array_equal(logprobs, rows.topk_logprobs, err_msg=stem)
