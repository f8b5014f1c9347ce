"""What fedtui shows is text, never a command to the terminal (engine.core.text)."""

from engine.core.text import printable, printable_fields


def test_control_sequences_go_whole_and_a_message_becomes_one_line():
    assert printable("a\x1b]52;c;aGk=\x07b\x1b[2Jc\x9b2Jd\x1b]0;title\x1b\\e") == "abcde"
    assert printable("del\x7f nul\x00 bell\x07 c1\x85\x9d8;;x\x9c") == "del nul bell c1 "
    assert printable("one\r\ntwo\tthree\nfour") == "one two three four"


def test_an_events_strings_keep_their_lines_and_tabs():
    event = {"type": "generated", "samples": [{"text": "def f():\r\n\treturn 1\x1b[31m"}], "n": 1}
    assert printable_fields(event) == {
        "type": "generated",
        "samples": [{"text": "def f():\n\treturn 1"}],
        "n": 1,
    }
