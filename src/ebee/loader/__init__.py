"""ELF objects as libbpf reads them, without side effects: sections, maps, externs and
relocations become an :class:`~ebee.loader.spec.ObjectSpec` (:mod:`.spec`), and
:mod:`.plan` decides what loading its maps means for either backend."""
