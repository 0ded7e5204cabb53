"""``dockyard check``: an image gate.

A policy (:mod:`.policy`) names rules; each rule family (:mod:`.rules`) judges an image's config and
the entries of its layers, read as streams from the store or a registry (:mod:`.run`), and reports
findings naming the rule, the layer and the path (:mod:`.report`)."""
