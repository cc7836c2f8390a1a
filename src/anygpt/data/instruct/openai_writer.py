"""Stage-1 writer through any OpenAI-compatible chat endpoint (a local server, a hosted one).

Standard library only (urllib). The model is asked for one conversation as JSON in the
`Script` format; answers that are not valid JSON or not a valid script are counted and
skipped, never fatal.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass

from anygpt.data.instruct.script import Script
from anygpt.errors import AnyGPTError

SYSTEM_PROMPT = (
    "You write realistic multi-turn conversations between a user and an assistant that can see images, "
    "hear speech and music, draw pictures, speak and compose music. Reply with JSON only, no prose: "
    '{"turns": [{"role": "user" or "assistant", "elements": [{"kind": "text" | "image" | "speech" | "music", '
    '"text": "..."}]}]}. A media element\'s text is a one-sentence description of the picture or music, or the '
    "exact words spoken for speech. Use 2 to 6 turns, alternate roles starting with the user, and put media "
    "where they belong in the conversation."
)


@dataclass
class OpenAIWriter:
    base_url: str  # e.g. http://127.0.0.1:8000/v1
    model: str
    api_key: str | None = None
    temperature: float = 0.9
    timeout: float = 120.0

    def _ask(self, topic: str) -> str:
        body = json.dumps({
            "model": self.model, "temperature": self.temperature,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                         {"role": "user", "content": f"Topic or scenario: {topic}"}],
        }).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.base_url.rstrip("/") + "/chat/completions", body, headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                reply = json.loads(r.read().decode())
        except (urllib.error.URLError, TimeoutError) as e:
            raise AnyGPTError(f"{self.base_url}: chat endpoint unreachable ({e})") from None
        try:
            return reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise AnyGPTError(f"{self.base_url}: not an OpenAI chat completion: {str(reply)[:200]}") from None

    def write_one(self, topic: str, script_id: str) -> Script:
        text = self._ask(topic)
        m = re.search(r"\{.*\}", text, re.S)  # tolerate ```json fences and chatter around the object
        try:
            d = json.loads(m.group(0) if m else text)
            return Script.from_json({"id": script_id, "scenario": topic, **d})
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise AnyGPTError(f"model answer for {script_id} is not a conversation script ({e}): {text[:120]!r}") from None

    def write(self, topics: list[str], n: int) -> tuple[list[Script], list[str]]:
        """n scripts cycling through topics -> (scripts, errors). Connection errors stop the run."""
        scripts, errors = [], []
        for i in range(n):
            try:
                scripts.append(self.write_one(topics[i % len(topics)], f"llm-{i:06d}"))
            except AnyGPTError as e:
                if "unreachable" in str(e):
                    raise
                errors.append(str(e))
        return scripts, errors
