"""The Bailian OpenAPI face ("bailian 2023-12-29"), as the official SDKs
(``alibabacloud-bailian20231229`` and its Java/Go/Node twins) call it: ROA paths under
``/{WorkspaceId}``, credentials as an ACS3-HMAC-SHA256 signature or
``x-acs-bearer-token``. A second face over the same services as ``/manage/v1`` and the CLI:
no business logic here, only reading parameters and rendering envelopes.

Modules:

- ``routing.py``: ``WORKSPACE`` (the path prefix; its convertor never matches ``api``,
  ``manage``, ``console``, ``docs``… so nothing here shadows another face) and
  ``family_router(envelope, tag)``.
- ``envelopes.py``: the three envelopes (``Envelope.DATACENTER``, ``BARE``, ``AGENTS``),
  ``ok(request, envelope, data, **fields)`` for a 200 (every 2xx has a JSON body), and the
  route class that renders every error — auth, parameters, domain — in the family's
  envelope with ``Code/Message/RequestId`` via ``api.errors.error_status_and_code``.
- ``auth.py``: ``OpenApiCaller``, the dependency that authenticates (signature or bearer),
  checks the path's workspace is the key's (403) and the rate limit (429 +
  ``x-acs-retry-after``); yields ``Caller(key_id, workspace_id)``.
- ``params.py``: ``ParamsDep``: path, form body (also chunked) and query, read with types:
  ``text``/``required_text``/``choice``/``integer``/``number``/``boolean``/``json_list``/
  ``json_object``; a bad value is a 400 naming the parameter.
- one module per family: ``memory.py`` (done), ``datacenter.py``, ``index.py``,
  ``agents.py``, ``prompts.py``; ``router.py`` includes them all.

Adding an operation to a family (e.g. in ``index.py``)::

    router = family_router(Envelope.DATACENTER, "knowledge indexes")

    @router.post(WORKSPACE + "/index/create")
    async def create_index(request: Request, caller: OpenApiCaller, params: ParamsDep,
                           runtime: RuntimeDep) -> JSONResponse:
        name = params.required_text("Name", max_length=100)
        ids = params.json_list("DocumentIds")
        ...  # call a service with caller.workspace_id; raise domain errors, never HTTP ones
        return ok(request, Envelope.DATACENTER, {"Id": base.id})

Path parameters are declared by their SDK names (``memoryId``, ``FileId``…) and arrive
percent-decoded. Trailing slashes are part of a path: write them exactly as the SDK's
``pathname`` (``/datacenter/file/{FileId}/``). Tests: ``tests/api/openapi/conftest.py``
gives a live server and SDK clients signed both ways.
"""
