"""Administration: API keys (admin) and the adjustment policy (read: everyone; replace: admin)."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request

from margincal.data import audit
from margincal.data.store import transaction
from margincal.errors import ConfigError
from margincal.service import auth, backends
from margincal.service.deps import Con, KeyAdmin, PolicyAdmin, Reader
from margincal.service.schemas import KeyCreate, PolicyUpdate

router = APIRouter(prefix="/api", tags=["admin"])
KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$")]


@router.get("/whoami", summary="The calling key's id, role, name and permissions", response_model=None)
def whoami(who: Reader) -> dict[str, Any]:
    return {"key_id": who.key_id, "role": who.role, "name": who.name, "permissions": sorted(who.permissions)}


@router.get("/keys", summary="Every API key (id, role, name, created, revoked; never the secret)",
            response_model=None)
def list_keys(_: KeyAdmin, con: Con) -> list[dict[str, Any]]:
    return auth.list_keys(con)


@router.post("/keys", status_code=201, summary="Create a key; the response holds the secret, shown only once",
             response_model=None)
def create_key(body: KeyCreate, request: Request, who: KeyAdmin) -> dict[str, Any]:
    try:
        with request.app.state.store.writer() as cur:
            new = auth.create_key(cur, body.role, body.name, actor=who.name, via_service=True)
    except ConfigError as exc:  # the body is well-formed (the schema checks it): the name is taken or reserved
        raise HTTPException(409, str(exc)) from None
    request.app.state.principals.clear()
    return {"key_id": new.key_id, "key": new.key, "role": new.role, "name": new.name}


@router.delete("/keys/{key_id}", summary="Revoke a key (kept for the record)", response_model=None,
               responses={404: {"description": "no such key"}, 409: {"description": "the key is already revoked"}})
def revoke_key(key_id: KeyId, request: Request, who: KeyAdmin) -> dict[str, Any]:
    with request.app.state.store.writer() as cur:
        found = cur.execute("SELECT revoked_at FROM api_keys WHERE key_id = ?", [key_id]).fetchone()
        if found is None:
            raise HTTPException(404, f"key {key_id} does not exist")
        if found[0] is not None:  # revoking twice: a conflict with the key's state, nothing changes
            raise HTTPException(409, f"key {key_id} was already revoked at {found[0].isoformat()}Z")
        row = auth.revoke_key(cur, key_id, actor=who.name)
    request.app.state.principals.clear()
    return row


def _policy_module() -> Any:
    mod = backends.optional_module("margincal.adjust.policy")
    if mod is None:
        raise HTTPException(501, "this margincal build has no adjustment policy module")
    return mod


@router.get("/policy", summary="The adjustment policy in force (the service's --policy file or the default)",
            response_model=None)
def get_policy(request: Request, _: Reader) -> dict[str, Any]:
    mod = _policy_module()
    path = request.app.state.settings.policy_path
    pol = mod.load_policy(path) if path is not None and path.exists() else mod.default_policy()
    return {"source": str(path.name) if path is not None and path.exists() else "default",
            "sha256": pol.sha256, "policy": backends.jsonable(pol.as_dict())}


@router.put("/policy", summary="Replace the policy file (validated first; audited)", response_model=None)
def put_policy(body: PolicyUpdate, request: Request, who: PolicyAdmin) -> dict[str, Any]:
    mod = _policy_module()
    path = request.app.state.settings.policy_path
    if path is None:
        raise HTTPException(409, "the service was started without --policy FILE; there is no policy file to replace")
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(body.toml, encoding="utf-8")
    try:
        pol = mod.load_policy(tmp)
    except ConfigError as exc:
        tmp.unlink(missing_ok=True)
        raise HTTPException(422, str(exc).replace(str(tmp), path.name).replace(tmp.name, path.name)) from None
    with request.app.state.store.writer() as cur, transaction(cur):
        tmp.replace(path)
        audit.append(cur, who.name, "policy_update", f"policy:{path.name}",
                     {"sha256": hashlib.sha256(body.toml.encode()).hexdigest(), "name": pol.name})
    return {"source": path.name, "sha256": pol.sha256, "policy": backends.jsonable(pol.as_dict())}
