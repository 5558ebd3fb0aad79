"""Widgets driven headlessly: real clicks delete, purge, pause and re-drive in a real store."""

from __future__ import annotations

import asyncio
import base64
import csv
import html
import io
import json
import re
import threading
from datetime import timedelta

import pytest

import airq_nb
from airq_nb.ui.widgets import QueueInspector, StatusPanel

HOSTILE = "<script>alert('x')</script><img src=x onerror=alert(1)>"


def inspector(store: airq_nb.Store, scheduler=None, **options) -> QueueInspector:
    return QueueInspector(store, scheduler, autostart=False, **options)


def tick(panel: QueueInspector, *ids: int) -> None:
    """Tick the checkboxes of the rows showing ``ids``, as a user would."""
    for row, message in zip(panel._rows, panel.messages, strict=False):
        if message.id in ids:
            row[0].value = True


def make_dead(store: airq_nb.Store, value: object, *, topic: str = "collect") -> int:
    message_id = store.enqueue(value, topic=topic, backoff_schedule=[])
    delivery = store.claim(topics=[topic])
    assert delivery is not None and delivery.id == message_id
    assert store.fail(delivery, f"failed with {HOSTILE}") == "dead"
    return message_id


def cell_texts(panel: QueueInspector, message_id: int) -> list[str]:
    """The plain text a user reads in the row of ``message_id`` (tags stripped, unescaped)."""
    for message, row in zip(panel.messages, panel._rows, strict=False):
        if message.id == message_id:
            return [html.unescape(re.sub(r"<[^>]+>", "", cell.value)) for cell in row[1:]]
    raise AssertionError(f"message {message_id} is not listed")


def all_html(panel: QueueInspector) -> str:
    texts = [c.value for c in panel.table.children if isinstance(c.value, str)]
    return "\n".join([*texts, panel.result.value, panel.summary.value])


def test_table_shows_topic_state_due_attempts_error_and_payload(clocked_store):
    store = clocked_store
    soon = store.enqueue({"station": "London"}, topic="collect", delay=300)
    dead = make_dead(store, {"n": 1}, topic="other")
    panel = inspector(store)
    assert {m.id for m in panel.messages} == {soon, dead}
    cells = {message_id: cell_texts(panel, message_id) for message_id in (soon, dead)}
    assert cells[soon][:5] == [str(soon), "collect", "queued", "in 5 min", "0/6"]
    assert "London" in cells[soon][6]
    assert cells[dead][2] == "dead" and cells[dead][4] == "1/1"
    assert "failed with" in cells[dead][5]
    assert "2 messages" in panel.summary.value
    assert panel.footer.value.startswith("showing 2 of 2")


def test_payload_and_error_text_is_escaped(store):
    make_dead(store, {"text": HOSTILE})
    store.enqueue(HOSTILE, topic=HOSTILE)
    panel = inspector(store)
    shown = all_html(panel)
    assert "<script" not in shown and "<img" not in shown
    assert "&lt;script&gt;" in shown and "&lt;img src=x onerror=alert(1)&gt;" in shown
    # The topic filter's options are plain text (ipywidgets renders them as text nodes).
    assert HOSTILE in panel.topic_filter.options


def test_delete_selected_deletes_exactly_the_ticked_messages(store):
    ids = [store.enqueue({"n": n}, topic="collect") for n in range(4)]
    panel = inspector(store)
    panel.delete_button.click()
    assert "Nothing selected" in panel.result.value
    tick(panel, ids[1], ids[3])
    panel.delete_button.click()
    assert [m.id for m in store.queue.list()] == [ids[0], ids[2]]
    assert panel.result.value == "Deleted 2 messages."
    assert [m.id for m in panel.messages] == [ids[0], ids[2]]
    assert panel.selected == set()


def test_purge_needs_a_confirmation_and_respects_the_filters(store):
    for n in range(3):
        store.enqueue({"n": n}, topic="collect")
    keep = store.enqueue({"n": 9}, topic="other")
    panel = inspector(store)
    panel.topic_filter.value = "collect"
    panel.purge_button.click()
    assert panel.confirming
    assert "Purge 3 messages in topic collect?" in panel.confirm_text.value
    assert store.queue.counts().total == 4  # asking deletes nothing
    panel.cancel_button.click()
    assert not panel.confirming
    panel.confirm_button.click()  # a stale confirm after cancel does nothing
    assert store.queue.counts().total == 4
    panel.purge_button.click()
    panel.confirm_button.click()
    assert [m.id for m in store.queue.list()] == [keep]
    assert panel.result.value == "Purged 3 messages in topic collect."
    assert panel.footer.value.startswith("showing 0 of 0")


def test_pause_and_resume_a_topic(store):
    store.enqueue({"n": 1}, topic="collect")
    panel = inspector(store)
    panel.topic_filter.value = "collect"
    # Filtering to a topic offers to pause that topic, and the button says so.
    assert panel.pause_scope.value == "collect"
    assert panel.pause_button.description == "Pause topic collect"
    panel.pause_button.click()
    assert store.queue.paused_topics() == ("collect",)
    assert store.claim(topics=["collect"]) is None
    assert panel.pause_button.description == "Resume topic collect"
    assert panel.result.value == "Paused delivery of topic collect."
    assert cell_texts(panel, panel.messages[0].id)[2] == "paused"
    panel.pause_button.click()
    assert store.queue.paused_topics() == ()
    assert store.claim(topics=["collect"]) is not None


def test_pause_everything_then_resume(store):
    panel = inspector(store)
    assert panel.pause_button.description == "Pause all topics"
    panel.pause_button.click()
    assert store.queue.paused_topics() == ("*",)
    assert "paused:</b> all topics" in panel.summary.value
    assert panel.pause_button.description == "Resume all topics"
    panel.pause_button.click()
    assert store.queue.paused_topics() == ()


def test_redrive_ticked_dead_letters_or_all_of_them(store):
    first = make_dead(store, {"n": 1})
    second = make_dead(store, {"n": 2})
    third = make_dead(store, {"n": 3}, topic="other")
    panel = inspector(store)
    tick(panel, second)
    panel.redrive_button.click()
    assert store.queue.get(second).state == "queued"
    assert store.queue.get(second).attempts == 0
    assert {store.queue.get(i).state for i in (first, third)} == {"dead"}
    assert panel.result.value == "Re-drove 1 dead letter."
    panel.topic_filter.value = "collect"
    panel.redrive_button.click()  # nothing ticked: every dead letter in the filter
    assert store.queue.get(first).state == "queued"
    assert store.queue.get(third).state == "dead"


def test_redrive_with_only_live_messages_ticked_redrives_nothing(store):
    first = make_dead(store, {"n": 1})
    second = make_dead(store, {"n": 2})
    live = store.enqueue({"n": 3}, topic="collect", delay=60)
    panel = inspector(store)
    tick(panel, live)
    panel.redrive_button.click()
    assert {store.queue.get(i).state for i in (first, second)} == {"dead"}
    assert store.queue.get(live).state == "queued"
    assert panel.result.value == "None of the ticked messages is a dead letter: nothing re-driven."


def test_with_everything_paused_the_button_says_it_resumes_all_topics(store):
    store.enqueue({"n": 1}, topic="collect")
    store.queue.pause(None)
    panel = inspector(store)
    panel.topic_filter.value = "collect"
    assert panel.pause_button.description == "Resume all topics"
    assert panel.pause_button.tooltip == "Resume delivery of all topics"
    panel.pause_button.click()
    assert store.queue.paused_topics() == ()
    assert panel.result.value == "Resumed delivery of all topics."
    assert panel.pause_button.tooltip == "Pause delivery of topic collect"


def test_as_text_keeps_each_message_on_one_line(store):
    message_id = store.enqueue({"n": 1}, topic="collect", backoff_schedule=[])
    delivery = store.claim(topics=["collect"])
    store.fail(delivery, "Traceback (most recent call last):\n  File 'x'\n    boom")
    lines = inspector(store).as_text().splitlines()
    (row,) = [line for line in lines if line.startswith(f"id={message_id} ")]
    assert "last error=Traceback (most recent call last): File 'x' boom" in row


def test_state_filter_shows_only_that_state(store):
    store.enqueue({"n": 1}, topic="later", delay=60)
    dead = make_dead(store, {"n": 2})
    panel = inspector(store)
    panel.state_filter.value = "dead"
    assert [m.id for m in panel.messages] == [dead]
    assert panel.footer.value.startswith("showing 1 of 1")


def test_table_is_bounded_and_says_so(store):
    for n in range(7):
        store.enqueue({"n": n}, topic="collect")
    panel = inspector(store, limit=5)
    assert len(panel.messages) == 5
    assert panel.footer.value == "showing 5 of 7 matching messages (first 5)"
    # Header plus five rows of eight cells.
    assert len(panel.table.children) == 8 * 6


def test_a_message_gone_behind_the_widgets_back_is_not_an_error(store):
    message_id = store.enqueue({"n": 1}, topic="collect")
    panel = inspector(store)
    tick(panel, message_id)
    store.queue.delete(message_id)
    panel.delete_button.click()
    assert panel.result.value == "Deleted 0 messages."
    assert panel.messages == []


def test_a_failed_action_shows_its_error_escaped(store):
    message_id = make_dead(store, {"n": 1}, topic=HOSTILE)
    panel = inspector(store)
    tick(panel, message_id)
    # Someone re-drives it meanwhile: re-driving a queued message is refused with a message.
    store.queue.redrive(message_id)
    panel.redrive_button.click()
    assert "not dead" in panel.result.value
    assert "<script" not in panel.result.value


def test_clicks_from_another_thread_change_the_store(store):
    ids = [store.enqueue({"n": n}, topic="collect") for n in range(3)]
    panel = inspector(store)
    tick(panel, ids[0])
    worker = threading.Thread(target=panel.delete_button.click)
    worker.start()
    worker.join(10)
    assert [m.id for m in store.queue.list()] == ids[1:]


def test_refreshes_itself_on_the_running_loop_and_stops(store):
    async def scenario() -> tuple[list[int], bool]:
        panel = QueueInspector(store, interval=0.05)
        assert panel.refreshing
        message_id = store.enqueue({"n": 1}, topic="collect")
        for _ in range(100):
            await asyncio.sleep(0.02)
            if panel.messages:
                break
        seen = [m.id for m in panel.messages]
        assert seen == [message_id]
        panel.close()
        await asyncio.sleep(0)
        return seen, panel.refreshing

    seen, still_refreshing = asyncio.run(scenario())
    assert seen and not still_refreshing


def test_outside_an_event_loop_it_does_not_start_a_task(store):
    panel = QueueInspector(store)
    assert not panel.refreshing
    panel.close()


def test_schedules_table_and_its_buttons_act_through_the_scheduler(clocked_store):
    store = clocked_store
    scheduler = airq_nb.Scheduler(store)
    scheduler.schedule("hourly <b>job</b>", every=timedelta(hours=1), topic="collect")
    panel = inspector(store, scheduler)
    assert "hourly &lt;b&gt;job&lt;/b&gt;" in panel.schedules_table.value
    assert "every 1.0 h" in panel.schedules_table.value
    assert panel.schedule_picker.value == "hourly <b>job</b>"
    panel.run_now_button.click()
    (queued,) = store.queue.list(topic="collect")
    assert queued.schedule == "hourly <b>job</b>"
    assert f"(message {queued.id})" in panel.result.value
    panel.pause_schedule_button.click()
    assert scheduler.get_schedule("hourly <b>job</b>").paused
    assert "<td><b>paused</b></td>" in panel.schedules_table.value
    panel.resume_schedule_button.click()
    assert not scheduler.get_schedule("hourly <b>job</b>").paused
    assert "schedule hourly <b>job</b>: topic=collect paused=False" in panel.as_text()


def test_without_a_scheduler_the_schedules_part_is_hidden(store):
    panel = inspector(store)
    assert panel.schedules_box.layout.display == "none"
    panel.run_now_button.click()
    assert panel.result.value == "No schedule picked."


def test_the_store_line_shows_the_last_delivery_with_its_time(clocked_store, fake_clock):
    store = clocked_store
    scheduler = airq_nb.Scheduler(store)

    def handler(value: dict) -> None:
        if value.get("fail"):
            raise ValueError(HOSTILE)

    scheduler.listen_queue(handler, topic="jobs")
    store.enqueue({"fail": False}, topic="jobs")
    store.enqueue({"fail": True}, topic="jobs", backoff_schedule=[])
    store.enqueue({"fail": False}, topic="jobs", delay=600)
    summary = asyncio.run(scheduler.run_until_idle(timeout=30))
    assert (summary.delivered, summary.dead_lettered) == (1, 1)
    fake_clock.advance(120)
    panel = inspector(store)
    line = panel.store_line.value
    assert "next delivery due: 2023-11-14 22:23 UTC (in 8 min)" in line
    assert (
        "last delivery: failed, now a dead letter (jobs) at 2023-11-14 22:13 UTC (2 min ago)"
        in line
    )
    assert "&lt;script&gt;" in line and "<script" not in line
    london = inspector(store, tz="Europe/London").store_line.value
    assert "22:13 GMT" in london


def test_status_panel_lists_stored_readings(store, openmeteo_server):
    source = airq_nb.source_from_env("open-meteo", base_url=openmeteo_server.url)
    stored = airq_nb.collect_now(store, source=source).stored
    panel = StatusPanel(store, autostart=False)
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", panel.value)).split())
    assert f"{stored:,} hourly readings" in text
    assert f"London (open-meteo) {stored} hours, newest" in text
    assert panel.status.readings == stored


def test_select_all_ticks_every_listed_message_and_delete_removes_them(store):
    ids = [store.enqueue({"n": n}, topic="collect") for n in range(3)]
    keep = store.enqueue({"n": 9}, topic="other")
    panel = inspector(store)
    panel.topic_filter.value = "collect"
    panel.select_all.value = True
    assert panel.selected == set(ids)
    assert all(row[0].value for row in panel._rows[:3])
    tick_off = panel._rows[0]
    tick_off[0].value = False
    assert not panel.select_all.value  # one unticked: "all" is no longer true
    tick_off[0].value = True
    assert panel.select_all.value
    panel.delete_button.click()
    assert [m.id for m in store.queue.list()] == [keep]


def test_view_payload_shows_the_whole_payload_escaped(store):
    long = {"text": HOSTILE, "numbers": list(range(100))}
    message_id = store.enqueue(long, topic="collect")
    panel = inspector(store)
    panel.view_button.click()
    assert "Nothing selected" in panel.result.value and panel.payload.value == ""
    tick(panel, message_id)
    panel.view_button.click()
    shown = panel.payload.value
    assert "<script" not in shown and "&lt;script&gt;" in shown
    assert '"numbers": [' in html.unescape(shown) and "99" in shown  # nothing cut
    assert panel.result.value == ""  # the "Nothing selected" line went


def test_csv_export_holds_every_listed_message_in_full(store):
    first = store.enqueue({"note": "=HYPERLINK(1)", "n": list(range(50))}, topic="collect")
    second = make_dead(store, {"n": 2}, topic="=cmd")
    panel = inspector(store)
    link = panel.export.value
    assert "download='airq-queue.csv'" in link and "2 listed messages" in link
    encoded = re.search(r"base64,([A-Za-z0-9+/=]+)'", link).group(1)
    rows = list(csv.DictReader(io.StringIO(base64.b64decode(encoded).decode())))
    assert [int(r["id"]) for r in rows] == [first, second]
    assert json.loads(rows[0]["payload"])["n"][-1] == 49  # the whole payload, not a preview
    assert rows[1]["topic"] == "'=cmd"  # a spreadsheet must not run it as a formula
    assert rows[1]["state"] == "dead" and "failed with" in rows[1]["last_error"]
    panel.state_filter.value = "dead"
    assert "1 listed message<" in panel.export.value


def test_an_earlier_result_line_is_cleared(clocked_store, fake_clock):
    store = clocked_store
    store.enqueue({"n": 1}, topic="collect")
    panel = inspector(store)
    panel.delete_button.click()
    assert "Nothing selected" in panel.result.value
    panel.state_filter.value = "queued"  # a new view of the table: the old line goes
    assert panel.result.value == ""
    panel.delete_button.click()
    panel.refresh()
    assert "Nothing selected" in panel.result.value
    fake_clock.advance(30)
    panel.refresh()  # and a result line does not stay on screen for ever
    assert panel.result.value == ""


def test_pause_selector_pauses_one_topic_whatever_the_filter(store):
    store.enqueue({"n": 1}, topic="collect")
    store.enqueue({"n": 2}, topic="other")
    scheduler = airq_nb.Scheduler(store)
    scheduler.schedule("hourly", every=timedelta(hours=1), topic="collect")
    panel = inspector(store, scheduler)
    assert ("topic other", "other") in panel.pause_scope.options
    panel.pause_scope.value = "collect"
    assert panel.pause_button.description == "Pause topic collect"
    panel.pause_button.click()
    assert store.queue.paused_topics() == ("collect",)
    assert "<td><b>topic paused</b></td>" in panel.schedules_table.value
    assert cell_texts(panel, store.queue.list(topic="collect")[0].id)[2] == "paused"


def test_an_unknown_time_zone_is_refused_at_once(store):
    with pytest.raises(airq_nb.ConfigurationError, match="Europe/London"):
        inspector(store, tz="Mars/Olympus")


def test_a_new_inspector_on_the_same_store_stops_the_old_ones_refreshes(store):
    async def scenario() -> tuple[bool, bool]:
        old = QueueInspector(store, interval=0.05)  # a cell run once...
        new = QueueInspector(store, interval=0.05)  # ...and again
        await asyncio.sleep(0)
        return old.refreshing, new.refreshing

    assert asyncio.run(scenario()) == (False, True)


def test_a_paused_topic_without_messages_can_still_be_resumed(store):
    store.queue.pause("quiet")
    panel = inspector(store)
    assert ("topic quiet", "quiet") in panel.pause_scope.options
    panel.pause_scope.value = "quiet"
    assert panel.pause_button.description == "Resume topic quiet"
    panel.pause_button.click()
    assert store.queue.paused_topics() == ()
