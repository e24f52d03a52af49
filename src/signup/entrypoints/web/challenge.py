"""`GET /signup/challenge`: a proof-of-work challenge for the form (SIGNUP_CHALLENGE=pow).

ALTCHA's widget on the page fetches one, solves it in the browser and the page posts the
solution with the sign-up (docs/abuse.md, "Proof of work"). Each answer is new and must
not be stored by anyone: `Cache-Control: no-store`.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from signup.bootstrap import Container
from signup.entrypoints.web.problems import problem

CHALLENGE_PATH = "/signup/challenge"
router = APIRouter()


@router.get(
    CHALLENGE_PATH,
    summary="A proof-of-work challenge (ALTCHA) for the sign-up form",
    responses={
        200: {
            "description": 'ALTCHA challenge: `{"algorithm": "SHA-256", "challenge", '
            '"maxnumber", "salt", "signature"}`'
        }
    },
)
async def signup_challenge(request: Request) -> Response:
    container: Container = request.app.state.container
    if container.challenge is None:
        return problem(404, "http-error", "Not Found")
    return Response(
        orjson.dumps(container.challenge.issue()),
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )
