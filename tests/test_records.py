from treeoflife import records


def test_keys_follow_the_published_forms():
    assert records.inat21_key("a1b2") == "inat21/a1b2"
    assert records.bioscan_key("BSCAN1-22") == "bioscan/BSCAN1-22"
    assert records.eol_key(123, 456) == "eol/123_456"


def test_treeoflife_id_is_a_stable_uuid_of_the_key():
    a = records.treeoflife_id("eol/1_2")
    assert a == records.treeoflife_id("eol/1_2")
    assert a != records.treeoflife_id("eol/1_3")
    assert len(a) == 36 and a.count("-") == 4


def test_query_id_depends_on_source_and_every_verbatim_field():
    base = {f: "x" for f in records.VERBATIM_QUERY_FIELDS}
    q = records.query_id("eol", base)
    assert q == records.query_id("eol", dict(base))
    assert q != records.query_id("inat21", base)
    for f in records.VERBATIM_QUERY_FIELDS:
        assert records.query_id("eol", {**base, f: "y"}) != q, f
    # a missing field and an empty one are the same query; the common name is not part of it
    assert records.query_id("eol", {**base, "verbatim_genus": None}) == records.query_id(
        "eol", {**base, "verbatim_genus": ""}
    )
    assert records.query_id("eol", {**base, "verbatim_common_name": "robin"}) == q
