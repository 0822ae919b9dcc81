"""Mail as bytes and text: parsing what arrives (:mod:`.parse`, :mod:`.quotes`),
composing what leaves (:mod:`.compose`, :mod:`.render`), and the signed tokens in
plus-addresses (:mod:`.tokens`).  Knows nothing of cases."""
