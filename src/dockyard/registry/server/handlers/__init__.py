"""The distribution API's handlers, one module per resource.

As distribution's ``registry/handlers``: :mod:`.blobs`, :mod:`.uploads`,
:mod:`.manifests`, :mod:`.tags`, :mod:`.catalog`, :mod:`.referrers`, and :mod:`.token`
(who may do what, and the token realm).

:class:`..app.RegistryApp` routes a request to one of them only after the path was
matched and validated, the caller authorised and the pull-through route computed (once
per request); a handler gets the app (storage, mirror, config, its thread pool) and
those checked parts, chooses by method (405 for any other) and answers. Handlers read
bodies only through the caps the app wrapped ``receive`` in (:mod:`..limits`).
"""
