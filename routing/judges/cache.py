"""The response cache: a repeated call (same provider, server, model, rendered prompt and
parameters) is answered from the database instead of paying the provider again.

Only answers are cached (parsed or not, refusals included); failures are not.
"""

import hashlib
from collections.abc import Iterable

import orjson

from routing.judges.models import JudgeResponseCache
from routing.judges.providers import JudgeRequest, JudgeResponse


def cache_key(*, provider: str, base_url: str, model: str, request: JudgeRequest) -> str:
    material = {
        "provider": provider,
        "base_url": base_url,
        "model": model,
        "system": request.system,
        "user": request.user,
        "output_mode": request.output_mode,
        "schema": request.json_schema,
        "sampling": request.sampling,
        "logprobs": request.logprobs,
    }
    return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()


def cache_get_many(keys: Iterable[str], *, chunk: int = 1000) -> dict[str, JudgeResponse]:
    keys = list(dict.fromkeys(keys))
    found: dict[str, JudgeResponse] = {}
    for start in range(0, len(keys), chunk):
        rows = JudgeResponseCache.objects.filter(key__in=keys[start : start + chunk]).values_list(
            "key", "response"
        )
        found.update((key, JudgeResponse.from_dict(resp)) for key, resp in rows)
    return found


CacheEntry = tuple[str, str, str, JudgeResponse]  # key, provider, model, response


def cache_put_many(entries: Iterable[CacheEntry]) -> None:
    """Store (key, provider, model, response); a key already stored is left as it is."""
    rows = [
        JudgeResponseCache(key=key, provider=provider, model=model, response=resp.to_dict())
        for key, provider, model, resp in entries
    ]
    if rows:
        JudgeResponseCache.objects.bulk_create(rows, ignore_conflicts=True)
