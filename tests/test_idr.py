"""ebee.idr: live objects by id, held weakly (Linux's map_idr)."""
from __future__ import annotations

import gc

import pytest

from ebee import maps
from ebee.idr import Idr, map_idr
from ebee.maps import Map, MapError
from ebee.uapi import MapType as T


class Obj:
    pass


def test_ids_count_up_and_are_not_reused():
    idr: Idr[Obj] = Idr()
    a, b = Obj(), Obj()
    ia, ib = idr.register(a), idr.register(b)
    assert (ia, ib) == (1, 2) and idr.get(ia) is a and idr.get(ib) is b
    idr.remove(ia)
    assert idr.get(ia) is None and idr.live() == [b]
    assert idr.register(Obj()) == 3


def test_an_id_does_not_keep_its_object_alive():
    idr: Idr[Obj] = Idr()
    oid = idr.register(Obj())
    gc.collect()
    assert idr.get(oid) is None and idr.live() == []


def test_maps_take_their_ids_from_the_map_idr():
    with Map(T.ARRAY, 4, 8, 2) as m:
        assert map_idr.get(m.id) is m and maps.by_id(m.id) is m
        mid = m.id
    assert map_idr.get(mid) is None
    with pytest.raises(MapError):
        maps.by_id(mid)
