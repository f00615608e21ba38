"""Helpers shared by the OpenAI chat <-> Gemini translation tests (test_translate_gemini_*.py)."""

from workers.translate.gemini import chat_request_to_gemini, gemini_response_to_chat

USER = {"role": "user", "content": "hi"}
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def convert(**body):
    body.setdefault("model", "gemini")
    body.setdefault("messages", [USER])
    return chat_request_to_gemini(body)


def to_chat(resp, response_id="r1"):
    return gemini_response_to_chat(resp, requested_model="alias", created=123, response_id=response_id)


def candidate(parts, finish="STOP"):
    out = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        out["finishReason"] = finish
    return out
