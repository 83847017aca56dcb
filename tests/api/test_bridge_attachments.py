"""What a chat message's attachments become in its turn (api/bridges/attachments.py and each bridge's
decide.py): pure, on real-shaped Slack files and Discord attachments, checked against the API's own input
model."""

from __future__ import annotations

from typing import Any

from parley.api.bridges.attachments import IMAGE_MAX_BYTES, MAX_IMAGES, attachments_of, turn_input
from parley.api.bridges.discord.decide import turn_for_interaction, turn_for_message
from parley.api.bridges.slack.decide import slack_input, turn_for_event
from parley.worker.request.inputs import InputMessage


def slack_file(name: str, mimetype: str, size: int = 1000) -> dict[str, Any]:
    return {"id": f"F{name}", "name": name, "mimetype": mimetype, "size": size, "filetype": name[-3:],
            "url_private": f"https://files.slack.com/files-pri/T1-F/{name}"}


def valid(value: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The input as the turns route accepts it (a message list the request model takes)."""
    assert isinstance(value, list)
    for message in value:
        InputMessage.model_validate(message)
    return value


def test_without_files_the_input_is_the_text() -> None:
    """No attachments: the plain text, as before."""
    assert turn_input("hello", (), images={}) == "hello"


def test_images_become_parts_and_other_files_are_named() -> None:
    """A png and a jpeg that were fetched are input_image parts (in order); a pdf, a too-big image and an
    image that failed to download are named in the text."""
    files = attachments_of([slack_file("a.png", "image/png"), slack_file("report.pdf", "application/pdf"),
                            slack_file("huge.png", "image/png", IMAGE_MAX_BYTES + 1),
                            slack_file("b.jpg", "image/jpeg"), slack_file("lost.gif", "image/gif")],
                           url="url_private", kind="mimetype", name="name")
    fetched = {f.url: f"data:{f.content_type};base64,AAAA" for f in files if f.name in ("a.png", "b.jpg")}
    [message] = valid(turn_input("look", files, images=fetched))
    assert message["role"] == "user"
    text, *images = message["content"]
    assert text == {"type": "input_text",
                    "text": "look\n[attached: report.pdf] [attached: huge.png] [attached: lost.gif]"}
    assert [i["image_url"] for i in images] == ["data:image/png;base64,AAAA", "data:image/jpeg;base64,AAAA"]


def test_an_image_alone_has_no_text_part_and_images_are_capped() -> None:
    """Only images, all sent: no empty text part; more images than a message may carry: the rest named."""
    files = attachments_of([slack_file(f"{n}.webp", "image/webp") for n in range(MAX_IMAGES + 2)],
                           url="url_private", kind="mimetype", name="name")
    [message] = valid(turn_input("", files, images={f.url: f.url for f in files}))
    text, *images = message["content"]
    assert len(images) == MAX_IMAGES
    assert text["text"] == f"[attached: {MAX_IMAGES}.webp] [attached: {MAX_IMAGES + 1}.webp]"
    [only] = valid(turn_input("", files[:1], images={files[0].url: files[0].url}))
    assert [p["type"] for p in only["content"]] == ["input_image"]


def test_a_slack_file_share_without_text_is_a_turn_with_its_files() -> None:
    """A DM that is only a file (subtype file_share, empty text) is a turn; its files are on it; the
    input names the file when it was not downloaded."""
    event = {"type": "message", "subtype": "file_share", "channel_type": "im", "channel": "D5", "user": "U7",
             "ts": "1712345678.000100", "team": "T1", "text": "",
             "files": [slack_file("notes.txt", "text/plain"), {"bogus": True}, "junk"]}
    turn = turn_for_event(event, bot_user_id="UBOT", team_id="T1")
    assert turn is not None and [f.name for f in turn.files] == ["notes.txt", "file"]
    [message] = valid(slack_input(turn, {}))
    assert message["content"] == [{"type": "input_text", "text": "[attached: notes.txt] [attached: file]"}]
    assert turn_for_event(event | {"files": []}, bot_user_id="UBOT", team_id="T1") is None


def discord_attachment(n: int, filename: str, content_type: str | None, size: int = 2000) -> dict[str, Any]:
    url = f"https://cdn.discordapp.com/attachments/13/{n}/{filename}?ex=1&is=2&hm=3"
    return {"id": str(n), "filename": filename, "size": size, "url": url, "proxy_url": url,
            **({"content_type": content_type} if content_type else {})}


def test_a_slash_commands_attachment_option_becomes_an_image_by_its_url() -> None:
    """The ATTACHMENT option's value names an attachment in data.resolved: an image is an input_image of
    its CDN URL; a file without a content type is named."""
    image, other = discord_attachment(1, "cat.png", "image/png"), discord_attachment(2, "notes", None)
    body = {"type": 2, "id": "15", "application_id": "11", "token": "t", "channel_id": "13",
            "data": {"name": "ask", "options": [{"name": "prompt", "type": 3, "value": "what is this?"},
                                                {"name": "file", "type": 11, "value": "1"},
                                                {"name": "more", "type": 11, "value": "2"}],
                     "resolved": {"attachments": {"1": image, "2": other}}}}
    turn = turn_for_interaction(body, command="ask")
    assert turn is not None
    [message] = valid(turn.input)
    assert message["content"] == [{"type": "input_text", "text": "what is this?\n[attached: notes]"},
                                  {"type": "input_image", "image_url": image["url"], "detail": "auto"}]
    plain = turn_for_interaction(body | {"data": {**body["data"], "options": body["data"]["options"][:1]}},
                                 command="ask")
    assert plain is not None and plain.input == "what is this?"


def test_a_gateway_messages_attachments_make_it_a_turn_even_without_text() -> None:
    """A DM that is only a jpeg and a too-big gif: a turn whose input is the jpeg by URL and the gif named;
    without attachments an empty message is still no turn."""
    jpeg = discord_attachment(3, "photo.jpg", "image/jpeg")
    gif = discord_attachment(4, "big.gif", "image/gif", IMAGE_MAX_BYTES + 1)
    how: dict[str, Any] = {"message_id": "19", "channel_id": "13", "guild_id": None, "author_id": "14",
                           "author_is_bot": False, "content": "", "mentioned_ids": [], "bot_user_id": "21",
                           "application_id": "11"}
    turn = turn_for_message(**how, attachments=[jpeg, gif])
    assert turn is not None
    [message] = valid(turn.input)
    assert message["content"] == [{"type": "input_text", "text": "[attached: big.gif]"},
                                  {"type": "input_image", "image_url": jpeg["url"], "detail": "auto"}]
    assert turn_for_message(**how) is None and turn_for_message(**how, attachments=[]) is None
