"""Benchmark: does a model, or a change to the agent, get real coding work done?

Small coding tasks of 17 kinds, each generated afresh in a temporary git
repository (a few files of code and a README), each with a check that can fail
and never asks a model; `--long-files` makes the files a request names as long
as real ones.  The agent runs on each as a user would run it: the command line,
one-shot, `--approval auto`, inside the task's repository (with `--resume latest`
where a session answered a request before).  The figures come from the session
file the run leaves behind.

    python tests/bench_tasks.py --model qwen2.5-coder:1.5b
    python tests/bench_tasks.py --tasks fix_bug,rename --repeat 3 --json results.json

Standard library only, like the agent.  Not collected by pytest; its checks are
tested against scripted replies in tests/test_bench_tasks.py.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, replace
from pathlib import Path

AGENT = Path(__file__).resolve().parent.parent / "mini_coding_agent.py"
RUN_TIMEOUT = 1200   # seconds one task run may take: a 1.5B model on 2 cores needs a few minutes


def code(text):
    """A file's text, written indented in this file for reading."""
    return textwrap.dedent(text).lstrip("\n")


def run_python(repo, *args, stdin=None):
    """Run Python in the task's repository; returns (exit code, stdout + stderr)."""
    try:
        done = subprocess.run([sys.executable, *args], cwd=repo, capture_output=True, text=True, input=stdin,
                              timeout=30)
    except subprocess.TimeoutExpired:
        return -1, "timed out"
    return done.returncode, done.stdout + done.stderr


def unittest_passes(repo, *args):
    """True if `python -m unittest` passes in the repository."""
    code_, output = run_python(repo, "-m", "unittest", *args)
    return code_ == 0 and "Ran 0 tests" not in output


def hidden_tests(tests):
    """A task's check: the tests the agent never sees pass in the repository."""
    def check(repo, answer):
        status, output = run_python(repo, "-", stdin=tests)
        return status == 0, output.strip().splitlines()[-1] if output.strip() else "no output"
    return check


def renamed(old, definition, home):
    """A rename's check: `old` is in no Python file, `definition` is in `home`, the tests pass."""
    def check(repo, answer):
        left = [path.name for path in repo.glob("*.py") if old in path.read_text()]
        defined = definition in (repo / home).read_text()
        return not left and defined and unittest_passes(repo), f"{old} still in {left}" if left else ""
    return check


def tests_catch(test_file, tests_before, module, correct, broken):
    """A check of tests the agent writes: more of them than `tests_before` in `test_file`, passing on
    the module and failing once `correct` is replaced by `broken` in it."""
    def check(repo, answer):
        path = repo / test_file
        if not path.is_file() or path.read_text().count("def test_") <= tests_before:
            return False, f"no new test in {test_file}"
        passes = unittest_passes(repo, path.stem)
        code_file = repo / module
        code_file.write_text(code_file.read_text().replace(correct, broken))
        catches = not unittest_passes(repo, path.stem)
        return passes and catches, f"pass on {module}: {passes}, fail on a broken copy: {catches}"
    return check


def tool(name, **args):
    """A scripted reply that calls a tool, as the protocol teaches."""
    return "<tool>" + json.dumps({"name": name, "args": args}) + "</tool>"


def patch(path, old, new):
    """A scripted reply that patches a file, in the XML form."""
    return f'<tool name="patch_file" path="{path}"><old_text>{old}</old_text><new_text>{new}</new_text></tool>'


# --- port: answer a question about the code ---------------------------------------

PORT_FILES = {
    "README.md": "# tinyserve\n\nA tiny static file server for local development. Settings live in settings.py.\n",
    "settings.py": code("""
        # Settings of the development server.
        HOST = "127.0.0.1"
        PORT = 8731
        DEBUG = False
        """),
    "server.py": code("""
        import http.server

        from settings import HOST, PORT


        def main():
            server = http.server.HTTPServer((HOST, PORT), http.server.SimpleHTTPRequestHandler)
            server.serve_forever()


        if __name__ == "__main__":
            main()
        """),
}


def port_check(repo, answer):
    return "8731" in answer, f"answer: {answer[:80]!r}"


# --- locate: where is a function defined ------------------------------------------

LOCATE_FILES = {
    "README.md": "# timeutil\n\nHelpers for durations and timestamps.\n",
    "src/timeutil/__init__.py": "from .format import describe\nfrom .parsing import parse_duration\n",
    "src/timeutil/parsing.py": code('''
        import re

        UNITS = {"s": 1, "m": 60, "h": 3600}


        def parse_duration(text):
            """Seconds in a duration such as '1h30m' or '45s'."""
            return sum(int(n) * UNITS[unit] for n, unit in re.findall(r"(\\d+)([smh])", text))
        '''),
    "src/timeutil/format.py": code('''
        def describe(seconds):
            """A duration in words, e.g. '2 minutes'."""
            minutes, seconds = divmod(seconds, 60)
            return f"{minutes} minutes" if minutes else f"{seconds} seconds"
        '''),
    "tests/test_parsing.py": code("""
        import unittest

        from timeutil import parse_duration


        class TestParse(unittest.TestCase):
            def test_minutes(self):
                self.assertEqual(parse_duration("2m"), 120)
        """),
}


def locate_check(repo, answer):
    return "timeutil/parsing.py" in answer, f"answer: {answer[:80]!r}"


# --- fix_bug: make a failing test pass without touching it ------------------------

FIX_BUG_FILES = {
    "README.md": "# stats\n\nSmall statistics helpers. Run the tests with `python -m unittest`.\n",
    "stats.py": code('''
        def mean(numbers):
            """The arithmetic mean of a non-empty list of numbers."""
            return sum(numbers) / (len(numbers) + 1)


        def spread(numbers):
            """The largest number minus the smallest."""
            return max(numbers) - min(numbers)
        '''),
    "test_stats.py": code("""
        import unittest

        from stats import mean, spread


        class TestStats(unittest.TestCase):
            def test_mean(self):
                self.assertEqual(mean([2, 4, 6]), 4)

            def test_spread(self):
                self.assertEqual(spread([3, 9, 4]), 6)


        if __name__ == "__main__":
            unittest.main()
        """),
}


def fix_bug_check(repo, answer):
    untouched, passes = (repo / "test_stats.py").read_text() == FIX_BUG_FILES["test_stats.py"], unittest_passes(repo)
    return untouched and passes, f"tests pass: {passes}, test file untouched: {untouched}"


# --- implement: a function from its docstring, checked by tests the agent never sees

IMPLEMENT_FILES = {
    "README.md": "# textkit\n\nText helpers for URLs.\n",
    "textkit.py": code('''
        def slugify(text):
            """Turn a title into a URL slug.

            Lower-case the text, replace every run of characters that are not
            letters or digits with a single hyphen, and remove hyphens at the
            start and end.  slugify("Hello, World!") == "hello-world"
            """
            raise NotImplementedError
        '''),
}
IMPLEMENT_HIDDEN_TESTS = code("""
    import unittest
    from textkit import slugify

    class Hidden(unittest.TestCase):
        def test_examples(self):
            self.assertEqual(slugify("Hello, World!"), "hello-world")
            self.assertEqual(slugify("  Python 3.12 -- What's New?  "), "python-3-12-what-s-new")
            self.assertEqual(slugify("already-a-slug"), "already-a-slug")
            self.assertEqual(slugify("***"), "")

    unittest.main()
    """)



# --- add_flag: a new command-line flag ----------------------------------------------

ADD_FLAG_FILES = {
    "README.md": "# greet\n\nUsage: `python greet.py NAME` prints a greeting.\n",
    "greet.py": code("""
        import argparse


        def main():
            parser = argparse.ArgumentParser(description="Greet someone.")
            parser.add_argument("name")
            args = parser.parse_args()
            print(f"Hello, {args.name}!")


        if __name__ == "__main__":
            main()
        """),
}


def add_flag_check(repo, answer):
    plain, loud = run_python(repo, "greet.py", "Bob"), run_python(repo, "greet.py", "--shout", "Bob")
    solved = plain == (0, "Hello, Bob!\n") and loud == (0, "HELLO, BOB!\n")
    return solved, f"plain {plain[1].strip()[:40]!r}, --shout {loud[1].strip()[:40]!r}"


# --- rename: a function, across several files -----------------------------------------

RENAME_FILES = {
    "README.md": "# billing\n\nInvoices. `billing.calc_total` adds up line items.\n",
    "billing.py": code('''
        def calc_total(items, tax_rate=0.0):
            """The total of (price, quantity) items, with tax."""
            subtotal = sum(price * quantity for price, quantity in items)
            return round(subtotal * (1 + tax_rate), 2)
        '''),
    "invoice.py": code("""
        from billing import calc_total


        def invoice_line(customer, items):
            return f"{customer}: {calc_total(items, tax_rate=0.2):.2f}"
        """),
    "test_billing.py": code("""
        import unittest

        from billing import calc_total
        from invoice import invoice_line


        class TestBilling(unittest.TestCase):
            def test_total(self):
                self.assertEqual(calc_total([(2.5, 2), (1.0, 3)]), 8.0)

            def test_line(self):
                self.assertEqual(invoice_line("ACME", [(10.0, 1)]), "ACME: 12.00")
        """),
}


# --- write_tests: tests that pass on the module and catch a broken copy ---------------

WRITE_TESTS_FILES = {
    "README.md": "# stack\n\nA small stack class.\n",
    "stack.py": code('''
        class Stack:
            """Last in, first out."""

            def __init__(self):
                self.items = []

            def push(self, item):
                self.items.append(item)

            def pop(self):
                """Remove and return the newest item; IndexError if empty."""
                if not self.items:
                    raise IndexError("pop from an empty stack")
                return self.items.pop()

            def peek(self):
                return self.items[-1]

            def __len__(self):
                return len(self.items)
        '''),
}


# --- config: change one setting ------------------------------------------------------------

CONFIG_FILES = {
    "README.md": "# fetcher\n\nDownloads files. Settings are in config.ini.\n",
    "config.ini": "[network]\nmax_retries = 3\ntimeout = 30\n\n[logging]\nlevel = INFO\n",
    "fetcher.py": code("""
        import configparser

        config = configparser.ConfigParser()
        config.read("config.ini")
        RETRIES = config.getint("network", "max_retries")
        """),
}


def config_check(repo, answer):
    import configparser
    config = configparser.ConfigParser()
    try:
        config.read(repo / "config.ini")
        values = (config["network"]["max_retries"], config["network"]["timeout"], config["logging"]["level"])
    except (configparser.Error, KeyError) as exc:
        return False, f"config.ini lost a setting ({exc})"
    return values == ("5", "30", "INFO"), f"max_retries, timeout, level = {values}"


# --- the second task of each kind above, and eight kinds more --------------------------
# Written after rounds 1 to 4 tuned the agent on the eight tasks above.  Each
# kind has two tasks; SPLIT below gives one of each to the tuning half.

def defaults_check(repo, answer):
    return "17" in answer.replace("17.", "17"), f"answer: {answer[:80]!r}"


TIMEOUT_FILES = {
    "README.md": "# fetchkit\n\nA tiny HTTP client.\n",
    "defaults.py": "# Defaults of the client and the CLI.\nDEFAULT_TIMEOUT = 17\nDEFAULT_AGENT = 'fetchkit/1.0'\n",
    "client.py": code("""
        import urllib.request

        from defaults import DEFAULT_AGENT, DEFAULT_TIMEOUT


        def fetch(url, timeout=DEFAULT_TIMEOUT):
            request = urllib.request.Request(url, headers={"User-Agent": DEFAULT_AGENT})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.read()
        """),
}


HANDLER_FILES = {
    "README.md": "# ledger\n\nA command-line ledger: `python cli.py COMMAND`.\n",
    "cli.py": code("""
        import sys

        from exporters.csv_export import export_csv
        from reports import monthly_report

        COMMANDS = {"export": export_csv, "report": monthly_report}


        def main():
            COMMANDS[sys.argv[1]]()


        if __name__ == "__main__":
            main()
        """),
    "exporters/__init__.py": "",
    "exporters/csv_export.py": code('''
        def export_csv():
            """Write the ledger as CSV to standard output."""
            print("date,amount")
        '''),
    "reports.py": code('''
        def monthly_report():
            """Print the totals of each month."""
            print("no entries")
        '''),
}


def handler_check(repo, answer):
    return "export_csv" in answer and "csv_export" in answer, f"answer: {answer[:80]!r}"


OFF_BY_ONE_FILES = {
    "README.md": "# pager\n\nSplits lists into pages; pages are numbered from 1. Tests: `python -m unittest`.\n",
    "pagination.py": code('''
        def page(items, number, size=10):
            """The items on page `number` (the first page is 1) of pages of `size` items."""
            start = number * size
            return items[start:start + size]
        '''),
    "test_pagination.py": code("""
        import unittest

        from pagination import page


        class TestPage(unittest.TestCase):
            def test_first_page(self):
                self.assertEqual(page(list(range(25)), 1), list(range(10)))

            def test_last_page(self):
                self.assertEqual(page(list(range(25)), 3), [20, 21, 22, 23, 24])
        """),
}


def off_by_one_check(repo, answer):
    untouched = (repo / "test_pagination.py").read_text() == OFF_BY_ONE_FILES["test_pagination.py"]
    passes = unittest_passes(repo)
    return untouched and passes, f"tests pass: {passes}, test file untouched: {untouched}"


WORDS_FILES = {
    "README.md": "# wordstat\n\nCounts words in texts.\n",
    "words.py": code('''
        def top_words(text, n):
            """The n most common words of a text, as (word, count) pairs, most common first.

            Words are runs of letters, compared in lower case; words with the same
            count come in alphabetical order.  top_words("b a B c", 2) == [("b", 2), ("a", 1)]
            """
            raise NotImplementedError
        '''),
}
WORDS_HIDDEN_TESTS = code("""
    import unittest
    from words import top_words

    class Hidden(unittest.TestCase):
        def test_examples(self):
            self.assertEqual(top_words("b a B c", 2), [("b", 2), ("a", 1)])
            self.assertEqual(top_words("The cat, the hat. THE end!", 2), [("the", 3), ("cat", 1)])
            self.assertEqual(top_words("", 3), [])

    unittest.main()
    """)



REPEAT_FILES = {
    "README.md": "# repeat\n\nUsage: `python repeat.py MESSAGE` prints the message.\n",
    "repeat.py": code("""
        import argparse


        def main():
            parser = argparse.ArgumentParser(description="Print a message.")
            parser.add_argument("message")
            args = parser.parse_args()
            print(args.message)


        if __name__ == "__main__":
            main()
        """),
}


def repeat_check(repo, answer):
    once, thrice = run_python(repo, "repeat.py", "hi"), run_python(repo, "repeat.py", "hi", "--count", "3")
    solved = once == (0, "hi\n") and thrice == (0, "hi\nhi\nhi\n")
    return solved, f"once {once[1].strip()[:30]!r}, --count 3 {thrice[1].strip()[:40]!r}"


ACCOUNT_FILES = {
    "README.md": "# members\n\nMember records.\n",
    "models.py": code('''
        class UserRecord:
            """A member: a name and an e-mail address."""

            def __init__(self, name, email):
                self.name, self.email = name, email

            def label(self):
                return f"{self.name} <{self.email}>"
        '''),
    "service.py": code("""
        from models import UserRecord


        def register(name, email):
            return UserRecord(name, email)
        """),
    "test_service.py": code("""
        import unittest

        from models import UserRecord
        from service import register


        class TestService(unittest.TestCase):
            def test_register(self):
                record = register("Ada", "ada@example.com")
                self.assertIsInstance(record, UserRecord)
                self.assertEqual(record.label(), "Ada <ada@example.com>")
        """),
}


QUEUE_FILES = {
    "README.md": "# fifo\n\nA queue. Tests: `python -m unittest`.\n",
    "fifo.py": code('''
        class Queue:
            """First in, first out."""

            def __init__(self):
                self.items = []

            def push(self, item):
                self.items.append(item)

            def pop(self):
                """Remove and return the oldest item; IndexError if the queue is empty."""
                if not self.items:
                    raise IndexError("pop from an empty queue")
                return self.items.pop(0)
        '''),
    "test_fifo.py": code("""
        import unittest

        from fifo import Queue


        class TestQueue(unittest.TestCase):
            def test_order(self):
                queue = Queue()
                queue.push(1)
                queue.push(2)
                self.assertEqual(queue.pop(), 1)
        """),
}


VERSION_FILES = {
    "README.md": "# tinylog\n\nLogging helpers.\n",
    "pyproject.toml": code('''
        [project]
        name = "tinylog"
        version = "1.2.7"
        requires-python = ">=3.9"
        dependencies = ["colorama>=0.4"]
        '''),
    "tinylog.py": "def log(message):\n    print(message)\n",
}


def version_check(repo, answer):
    text = (repo / "pyproject.toml").read_text()
    import re
    versions = re.findall(r'^version\s*=\s*"([^"]*)"', text, re.MULTILINE)
    intact = 'name = "tinylog"' in text and 'dependencies = ["colorama>=0.4"]' in text
    return versions == ["1.3.0"] and intact, f"version {versions}, the rest intact: {intact}"


SHAPES_FILES = {
    "README.md": "# shapes\n\nGeometry helpers.\n",
    "shapes.py": code('''
        class Rectangle:
            """A rectangle of a width and a height."""

            def __init__(self, width, height):
                self.width, self.height = width, height

            def perimeter(self):
                return 2 * (self.width + self.height)
        '''),
}
SHAPES_HIDDEN_TESTS = code("""
    from shapes import Rectangle
    assert Rectangle(3, 4).area() == 12
    assert Rectangle(3, 4).perimeter() == 14
    print("ok")
    """)



CART_FILES = {
    "README.md": "# shop\n\nA shopping cart.\n",
    "cart.py": code('''
        class Cart:
            """Items in a shopping cart: (name, price, quantity)."""

            def __init__(self):
                self.items = []

            def add(self, name, price, quantity=1):
                self.items.append((name, price, quantity))

            def count(self):
                return sum(quantity for _, _, quantity in self.items)
        '''),
}
CART_HIDDEN_TESTS = code("""
    from cart import Cart
    cart = Cart()
    cart.add("tea", 2.5, 2)
    cart.add("cake", 4.0)
    assert cart.total() == 9.0, cart.total()
    assert cart.count() == 3
    assert Cart().total() == 0
    print("ok")
    """)



PERSON_FILES = {
    "README.md": "# people\n\nPeople and their ages.\n",
    "person.py": code('''
        class Person:
            def __init__(self, name):
                self.name, self.age = name, None

            def set_age(self, age):
                """Set the person's age in years."""
                self.age = age
        '''),
}
PERSON_HIDDEN_TESTS = code("""
    from person import Person
    person = Person("Ada")
    person.set_age(36)
    assert person.age == 36
    try:
        person.set_age(-1)
    except ValueError as error:
        assert str(error), "the error says nothing"
    else:
        raise AssertionError("no ValueError for -1")
    assert person.age == 36
    print("ok")
    """)



DISCOUNT_FILES = {
    "README.md": "# pricing\n\nPrice rules.\n",
    "discount.py": code('''
        def apply_discount(price, percent):
            """The price after a discount of `percent` percent."""
            return round(price * (100 - percent) / 100, 2)
        '''),
}
DISCOUNT_HIDDEN_TESTS = code("""
    from discount import apply_discount
    assert apply_discount(50.0, 10) == 45.0
    assert apply_discount(50.0, 0) == 50.0 and apply_discount(50.0, 100) == 0.0
    for bad in (-5, 150):
        try:
            apply_discount(50.0, bad)
        except ValueError as error:
            assert str(error), "the error says nothing"
        else:
            raise AssertionError(f"no ValueError for {bad}")
    print("ok")
    """)



METRICS_FILES = {
    "README.md": "# metrics\n\nSmall number helpers.\n",
    "metrics.py": code('''
        def average(values):
            """The mean of a list of numbers."""
            return sum(values) / len(values)
        '''),
}
METRICS_HIDDEN_TESTS = code("""
    from metrics import average
    assert average([2, 4]) == 3
    assert average([]) == 0.0
    print("ok")
    """)



SETTINGS_FILES = {
    "README.md": "# app\n\nSettings come from settings.json, if there is one.\n",
    "settings_loader.py": code('''
        import json

        DEFAULTS = {"theme": "light", "font_size": 12}


        def load_settings(path="settings.json"):
            """The defaults, updated with what the settings file holds."""
            with open(path) as file:
                return {**DEFAULTS, **json.load(file)}
        '''),
}
SETTINGS_HIDDEN_TESTS = code("""
    import json, os, tempfile
    from settings_loader import DEFAULTS, load_settings
    with tempfile.TemporaryDirectory() as folder:
        missing = os.path.join(folder, "settings.json")
        assert load_settings(missing) == DEFAULTS, load_settings(missing)
        with open(missing, "w") as file:
            json.dump({"theme": "dark"}, file)
        assert load_settings(missing) == {"theme": "dark", "font_size": 12}
    print("ok")
    """)



REPORT_FILES = {
    "README.md": "# books\n\nPrints a small account report.\n",
    "report.py": code('''
        def income_line(amount):
            return "Income: " + f"${amount:,.2f}"


        def expense_line(amount):
            return "Expenses: " + f"${amount:,.2f}"


        def balance_line(income, expenses):
            return "Balance: " + f"${income - expenses:,.2f}"
        '''),
}
REPORT_HIDDEN_TESTS = code("""
    import report
    assert report.format_money(1234.5) == "$1,234.50"
    assert report.income_line(1000) == "Income: $1,000.00"
    assert report.expense_line(2.5) == "Expenses: $2.50"
    assert report.balance_line(10, 2.5) == "Balance: $7.50"
    print("ok")
    """)


def report_check(repo, answer):
    status, output = run_python(repo, "-", stdin=REPORT_HIDDEN_TESTS)
    repeated = (repo / "report.py").read_text().count(",.2f}")
    seen = output.strip().splitlines()[-1] if output.strip() else "no output"
    return status == 0 and repeated <= 1, f"{seen}; the format written {repeated} times"


USERS_FILES = {
    "README.md": "# roster\n\nNames of club members.\n",
    "users.py": code('''
        def add_member(roster, name):
            roster.append(name.strip().title())


        def is_member(roster, name):
            return name.strip().title() in roster
        '''),
}
USERS_HIDDEN_TESTS = code("""
    import users
    assert users.clean_name("  ada lovelace ") == "Ada Lovelace"
    roster = []
    users.add_member(roster, " grace HOPPER")
    assert roster == ["Grace Hopper"] and users.is_member(roster, "grace hopper ")
    print("ok")
    """)


def users_check(repo, answer):
    status, output = run_python(repo, "-", stdin=USERS_HIDDEN_TESTS)
    repeated = (repo / "users.py").read_text().count(".strip().title()")
    seen = output.strip().splitlines()[-1] if output.strip() else "no output"
    return status == 0 and repeated <= 1, f"{seen}; .strip().title() written {repeated} times"


GEOMETRY_FILES = {
    "README.md": "# points\n\nPoints typed as 'x,y'. `python main.py` prints a distance.\n",
    "geometry.py": code('''
        import math


        def parse_point(text):
            """The point written as 'x,y', as a tuple of two floats."""
            x, y = text.split(",")
            return float(x), float(y)


        def distance_from_origin(point):
            return math.hypot(point[0], point[1])
        '''),
    "main.py": code("""
        from geometry import distance_from_origin, parse_point

        point = parse_point("3,4")
        print(distance_from_origin(point))
        """),
}
GEOMETRY_HIDDEN_TESTS = code("""
    from geometry import distance_from_origin, parse_point
    assert parse_point("3,4") == {"x": 3.0, "y": 4.0}, parse_point("3,4")
    assert distance_from_origin(parse_point("6,8")) == 10.0
    print("ok")
    """)


def geometry_check(repo, answer):
    status, output = run_python(repo, "-", stdin=GEOMETRY_HIDDEN_TESTS)
    printed = run_python(repo, "main.py")
    seen = output.strip().splitlines()[-1] if output.strip() else "no output"
    return status == 0 and printed == (0, "5.0\n"), f"{seen}; main.py printed {printed[1].strip()[:30]!r}"


LOOKUP_FILES = {
    "README.md": "# greeter\n\nGreets the users it knows.\n",
    "db.py": code('''
        USERS = {"ada": "Ada Lovelace", "alan": "Alan Turing"}


        def find_user(login):
            """The full name of a user; KeyError if there is none."""
            return USERS[login]
        '''),
    "app.py": code("""
        from db import find_user


        def greet(login):
            try:
                return f"Hello, {find_user(login)}!"
            except KeyError:
                return "Unknown user"
        """),
}
LOOKUP_HIDDEN_TESTS = code("""
    from app import greet
    from db import find_user
    assert find_user("ada") == "Ada Lovelace"
    assert find_user("nobody") is None
    assert greet("alan") == "Hello, Alan Turing!" and greet("nobody") == "Unknown user"
    print("ok")
    """)



STAMPS_FILES = {
    "README.md": "# stamps\n\nTimestamps for log lines.\n",
    "stamps.py": code('''
        import datetime


        def now_stamp():
            """The current time in UTC, as an ISO 8601 string."""
            return datetime.datetime.utcnow().isoformat()
        '''),
}
STAMPS_HIDDEN_TESTS = code("""
    import datetime, stamps
    value = datetime.datetime.fromisoformat(stamps.now_stamp())
    assert value.utcoffset() == datetime.timedelta(0), value
    print("ok")
    """)


def stamps_check(repo, answer):
    status, output = run_python(repo, "-W", "error::DeprecationWarning", "-", stdin=STAMPS_HIDDEN_TESTS)
    left = "utcnow(" in (repo / "stamps.py").read_text()
    seen = output.strip().splitlines()[-1] if output.strip() else "no output"
    return status == 0 and not left, f"{seen}; utcnow still there: {left}"


MATH_FILES = {
    "README.md": "# mathkit\n\nTests: `python -m unittest`.\n",
    "mathkit.py": "def double(x):\n    return 2 * x\n\n\ndef square(x):\n    return x * x\n",
    "test_mathkit.py": code("""
        import unittest

        from mathkit import double, square


        class TestMath(unittest.TestCase):
            def test_double(self):
                self.assertEquals(double(4), 8)

            def test_square(self):
                self.assertEquals(square(3), 9)
        """),
}


def math_check(repo, answer):
    text = (repo / "test_mathkit.py").read_text()
    kept = text.count("def test_") == 2 and text.count("assertEqual(") == 2
    return "assertEquals" not in text and kept and unittest_passes(repo), f"assertEquals left: {'assertEquals' in text}"


TAGS_FILES = {
    "README.md": "# tagger\n\nTags of notes.\n",
    "tags.py": code('''
        def list_tags(notes):
            """The tags used by the notes, each once."""
            tags = set()
            for note in notes:
                tags.update(note["tags"])
            return list(tags)
        '''),
}
TAGS_HIDDEN_TESTS = code("""
    from tags import list_tags
    notes = [{"tags": ["zeta", "alpha"]}, {"tags": ["mu", "alpha", "beta"]}]
    assert list_tags(notes) == ["alpha", "beta", "mu", "zeta"], list_tags(notes)
    many = [{"tags": [f"t{n:02}" for n in range(30, 0, -1)]}]   # 4 tags fall in order by chance,
    assert list_tags(many) == sorted(many[0]["tags"])            # 1 time in 24; 30 tags never do
    print("ok")
    """)



EXPORT_FILES = {
    "README.md": "# exporter\n\nWrites records as JSON.\n",
    "export.py": code('''
        import json


        def export(record, path):
            """Write a record (a dict) to a JSON file."""
            with open(path, "w") as file:
                json.dump(record, file, indent=2)
        '''),
}
EXPORT_HIDDEN_TESTS = code("""
    import json, os, tempfile
    from export import export
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "out.json")
        export({"zeta": 1, "alpha": {"b": 2, "a": 1}}, path)
        with open(path) as file:
            text = file.read()
    assert json.loads(text) == {"zeta": 1, "alpha": {"b": 2, "a": 1}}
    assert text.index('"alpha"') < text.index('"zeta"') and text.index('"a"') < text.index('"b"'), text
    print("ok")
    """)



def big_repo(special):
    """A repository of 64 small modules in eight packages, with `special` files put in."""
    files = {"README.md": "# platform\n\nEight packages of small modules.\n"}
    for package in ("auth", "billing", "cache", "db", "jobs", "net", "search", "units"):
        files[f"{package}/__init__.py"] = ""
        for n in range(8):
            files[f"{package}/part_{n}.py"] = code(f'''
                """Part {n} of the {package} package."""

                LIMIT_{n} = {n + 3}


                def step_{n}(value):
                    return value + LIMIT_{n}
                ''')
        files[f"{package}/limits.py"] = f'"""Limits of the {package} package."""\n\nMAX_RETRIES = 3\nTIMEOUT = 30\n'
    return {**files, **special}


LIMITS_FILES = big_repo({})


def limits_check(repo, answer):
    import re
    found = {package: re.findall(r"^MAX_RETRIES = (\d+)$", (repo / package / "limits.py").read_text(), re.MULTILINE)
             for package in ("auth", "billing", "cache", "db", "jobs", "net", "search", "units")}
    others = all(found[package] == ["3"] for package in found if package != "net")
    return found["net"] == ["5"] and others, f"net {found['net']}, the others unchanged: {others}"


CELSIUS_FILES = big_repo({"units/temperature.py": code('''
    def to_celsius(fahrenheit):
        """Degrees Fahrenheit in degrees Celsius."""
        return (fahrenheit - 32) * 9 / 5


    def to_fahrenheit(celsius):
        """Degrees Celsius in degrees Fahrenheit."""
        return celsius * 9 / 5 + 32
    ''')})
CELSIUS_HIDDEN_TESTS = code("""
    from units.temperature import to_celsius, to_fahrenheit
    assert to_celsius(212) == 100 and to_celsius(32) == 0, to_celsius(212)
    assert to_fahrenheit(100) == 212
    print("ok")
    """)



# --- a second request in a session that answered one before (--resume) -------------------

def second_request(check, earlier_answer):
    """A check for a session's second request: `check`, and an answer of its own (not the answer
    to the request before, word for word, which tells the user nothing of this one)."""
    def both(repo, answer):
        solved, seen = check(repo, answer)
        copied = answer.strip() == earlier_answer
        return solved and not copied, f"{seen}; the earlier answer again: {copied}"
    return both


def drafted(text, old, new):
    """A scripted reply to the coach's ask for a whole file: `text` with `old` made `new`."""
    return f"```python\n{text.replace(old, new)}```"


INVENTORY_FILES = {
    "README.md": "# stock\n\nCounts the items in stock.\n",
    "inventory.py": code('''
        """Items in stock and their counts."""


        class Inventory:
            def __init__(self):
                self.counts = {}

            def add(self, name, count=1):
                self.counts[name] = self.counts.get(name, 0) + count

            def remove(self, name, count=1):
                self.counts[name] = self.counts.get(name, 0) - count

            def total(self):
                return sum(self.counts.values())
        '''),
    "test_inventory.py": code("""
        import unittest

        from inventory import Inventory


        class InventoryTest(unittest.TestCase):
            def test_add_and_total(self):
                inventory = Inventory()
                inventory.add("apple", 3)
                inventory.add("pear")
                self.assertEqual(inventory.total(), 4)


        if __name__ == "__main__":
            unittest.main()
        """),
}
INVENTORY_RAISE = 'raise ValueError(f"not enough {name} to remove")'
INVENTORY_ANSWER = "remove() now raises ValueError when there are not enough items to remove."
INVENTORY_EARLIER = ("In inventory.py, make remove() raise a ValueError when there are not enough items to remove.",
                     [drafted(INVENTORY_FILES["inventory.py"],
                              "        self.counts[name] = self.counts.get(name, 0) - count",
                              f"        if self.counts.get(name, 0) < count:\n            {INVENTORY_RAISE}\n"
                              "        self.counts[name] -= count"),
                      tool("run_shell", command="python -m unittest"), f"<final>{INVENTORY_ANSWER}</final>"])

PRICES_FILES = {
    "README.md": "# till\n\nAdds up prices as shop staff type them.\n",
    "prices.py": code('''
        """Prices as shop staff type them."""


        def parse_price(text):
            """'$3.50' -> 3.5"""
            return float(text.strip().lstrip("$"))


        def total(texts):
            return sum(parse_price(text) for text in texts)
        '''),
}
PRICES_ANSWER = "parse_price now takes a comma as the decimal separator: '3,50' gives 3.5."
PRICES_EARLIER = ("Make parse_price in prices.py accept a comma as the decimal separator, as in '3,50'.",
                  [drafted(PRICES_FILES["prices.py"], '    return float(text.strip().lstrip("$"))',
                           '    return float(text.strip().lstrip("$").replace(",", "."))'),
                   tool("run_shell",
                        command="python -c \"from prices import parse_price; print(parse_price('3,50'))\""),
                   f"<final>{PRICES_ANSWER}</final>"])
PRICES_HIDDEN_TESTS = code("""
    from prices import parse_price, total
    assert parse_price("") == 0.0 and parse_price("   ") == 0.0, "blank"
    assert parse_price("$3,50") == 3.5 and parse_price(" $2.25 ") == 2.25, "the earlier work kept"
    assert total(["$1", "", "2,5"]) == 3.5
    print("ok")
    """)


# --- the table ---------------------------------------------------------------------------

@dataclass
class Task:
    name: str
    request: str
    files: dict
    check: object      # check(repo, answer) -> (solved, what was seen)
    solution: list     # scripted replies that solve the task, for the benchmark's own tests
    earlier: tuple = ()   # (request, scripted replies): answered in the session the run resumes


FIRST_TASKS = [   # the first eight, tuned on in rounds 1 to 4
    Task("port", "Which TCP port does the development server listen on? Answer with the number.",
         PORT_FILES, port_check,
         [tool("read_file", path="settings.py"), "<final>It listens on port 8731.</final>"]),
    Task("locate", "In which file is the function parse_duration defined? Answer with the file's path.",
         LOCATE_FILES, locate_check,
         [tool("search", pattern="def parse_duration"), "<final>src/timeutil/parsing.py</final>"]),
    Task("fix_bug", "The tests fail (python -m unittest). Fix the bug in stats.py so that they pass, "
         "without changing the tests.", FIX_BUG_FILES, fix_bug_check,
         [tool("read_file", path="stats.py"), patch("stats.py", "(len(numbers) + 1)", "len(numbers)"),
          tool("run_shell", command="python -m unittest"), "<final>Fixed the mean's divisor.</final>"]),
    Task("implement", "Implement slugify in textkit.py as its docstring describes.",
         IMPLEMENT_FILES, hidden_tests(IMPLEMENT_HIDDEN_TESTS),
         [tool("read_file", path="textkit.py"),
          patch("textkit.py", "    raise NotImplementedError",
                '    import re\n    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")'),
          tool("run_shell", command="python -c \"import textkit; print(textkit.slugify('Hello, World!'))\""),
          "<final>slugify is implemented.</final>"]),
    Task("add_flag", "Add a --shout flag to greet.py that prints the greeting in upper case.",
         ADD_FLAG_FILES, add_flag_check,
         [tool("read_file", path="greet.py"),
          patch("greet.py", '    parser.add_argument("name")',
                '    parser.add_argument("name")\n    parser.add_argument("--shout", action="store_true")'),
          patch("greet.py", '    print(f"Hello, {args.name}!")',
                '    greeting = f"Hello, {args.name}!"\n    print(greeting.upper() if args.shout else greeting)'),
          tool("run_shell", command="python greet.py --shout Bob"), "<final>Added --shout.</final>"]),
    Task("rename", "Rename the function calc_total to compute_total everywhere in the project.",
         RENAME_FILES, renamed("calc_total", "def compute_total(", "billing.py"),
         [tool("search", pattern="calc_total"),
          tool("run_shell", command="sed -i 's/calc_total/compute_total/g' billing.py invoice.py test_billing.py"),
          tool("run_shell", command="python -m unittest"), "<final>Renamed in three files.</final>"]),
    Task("write_tests", "Write unit tests for stack.py in a new file test_stack.py (use unittest).",
         WRITE_TESTS_FILES,
         tests_catch("test_stack.py", 0, "stack.py", "return self.items.pop()", "return self.items.pop(0)"),
         [tool("read_file", path="stack.py"),
          '<tool name="write_file" path="test_stack.py"><content>import unittest\nfrom stack import Stack\n\n\n'
          "class TestStack(unittest.TestCase):\n    def test_last_in_first_out(self):\n        s = Stack()\n"
          "        s.push(1)\n        s.push(2)\n        self.assertEqual(s.pop(), 2)\n\n"
          "    def test_empty_pop(self):\n        with self.assertRaises(IndexError):\n            Stack().pop()\n"
          "</content></tool>", tool("run_shell", command="python -m unittest test_stack"),
          "<final>Wrote test_stack.py.</final>"]),
    Task("config", "Set max_retries to 5 in config.ini.", CONFIG_FILES, config_check,
         [patch("config.ini", "max_retries = 3", "max_retries = 5"), "<final>max_retries is 5.</final>"]),
]


def write(path, content):
    """A scripted reply that writes a whole file, in the XML form."""
    return f'<tool name="write_file" path="{path}"><content>{content}</content></tool>'


def checked(*calls, answer="Done."):
    """Scripted calls, then a command that checks the change, then the answer."""
    return [*calls, tool("run_shell", command="python -m unittest -q 2>&1 | tail -1; true"), f"<final>{answer}</final>"]


MORE_TASKS = [
    Task("timeout_default", "What is the default request timeout, in seconds, that fetch() in client.py uses? "
         "Answer with the number.", TIMEOUT_FILES, defaults_check,
         [tool("read_file", path="defaults.py"), "<final>17 seconds.</final>"]),
    Task("find_handler", "Which function handles the export command of the CLI? Give the file and the function.",
         HANDLER_FILES, handler_check,
         [tool("read_file", path="cli.py"), "<final>export_csv in exporters/csv_export.py</final>"]),
    Task("off_by_one", "The tests fail (python -m unittest). Fix pagination.py so that they pass, without "
         "changing the tests.", OFF_BY_ONE_FILES, off_by_one_check,
         checked(patch("pagination.py", "    start = number * size", "    start = (number - 1) * size"))),
    Task("implement_words", "Implement top_words in words.py as its docstring says.", WORDS_FILES,
         hidden_tests(WORDS_HIDDEN_TESTS),
         checked(patch("words.py", "    raise NotImplementedError",
                       "    import re\n    from collections import Counter\n"
                       "    counts = Counter(word.lower() for word in re.findall(r\"[A-Za-z]+\", text))\n"
                       "    return sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))[:n]"))),
    Task("add_option", "Add a --count N option to repeat.py that prints the message N times (1 by default).",
         REPEAT_FILES, repeat_check,
         checked(patch("repeat.py", '    parser.add_argument("message")',
                       '    parser.add_argument("message")\n    parser.add_argument("--count", type=int, default=1)'),
                 patch("repeat.py", "    print(args.message)",
                       "    for _ in range(args.count):\n        print(args.message)"))),
    Task("rename_class", "Rename the class UserRecord to Account everywhere in the project.",
         ACCOUNT_FILES, renamed("UserRecord", "class Account", "models.py"),
         checked(patch("models.py", "class UserRecord:", "class Account:"),
                 write("service.py", "from models import Account\n\n\ndef register(name, email):\n"
                                     "    return Account(name, email)\n"),
                 tool("run_shell", command="sed -i 's/UserRecord/Account/g' test_service.py"))),
    Task("edge_case_test", "Add a test to test_fifo.py that popping from an empty Queue raises IndexError.",
         QUEUE_FILES,
         tests_catch("test_fifo.py", 1, "fifo.py", 'raise IndexError("pop from an empty queue")', "return None"),
         checked(patch("test_fifo.py", "        self.assertEqual(queue.pop(), 1)\n",
                       "        self.assertEqual(queue.pop(), 1)\n\n    def test_empty(self):\n"
                       "        with self.assertRaises(IndexError):\n            Queue().pop()\n"))),
    Task("version_bump", "Bump the version of the project to 1.3.0.", VERSION_FILES, version_check,
         [patch("pyproject.toml", 'version = "1.2.7"', 'version = "1.3.0"'), "<final>Version 1.3.0.</final>"]),
    Task("add_method_area", "Add an area() method to Rectangle in shapes.py.", SHAPES_FILES,
         hidden_tests(SHAPES_HIDDEN_TESTS),
         checked(patch("shapes.py", "        return 2 * (self.width + self.height)\n",
                       "        return 2 * (self.width + self.height)\n\n    def area(self):\n"
                       "        return self.width * self.height\n"))),
    Task("add_method_total", "Give Cart in cart.py a total() method: the sum of price times quantity.",
         CART_FILES, hidden_tests(CART_HIDDEN_TESTS),
         checked(patch("cart.py", "        return sum(quantity for _, _, quantity in self.items)\n",
                       "        return sum(quantity for _, _, quantity in self.items)\n\n    def total(self):\n"
                       "        return sum(price * quantity for _, price, quantity in self.items)\n"))),
    Task("validate_age", "set_age in person.py accepts negative ages. Make it raise a ValueError with a clear "
         "message instead.", PERSON_FILES, hidden_tests(PERSON_HIDDEN_TESTS),
         checked(patch("person.py", "        self.age = age",
                       '        if age < 0:\n            raise ValueError(f"age must not be negative, got {age}")\n'
                       "        self.age = age"))),
    Task("validate_percent", "apply_discount in discount.py should raise a ValueError when percent is not "
         "between 0 and 100.", DISCOUNT_FILES, hidden_tests(DISCOUNT_HIDDEN_TESTS),
         checked(patch("discount.py", "    return round(",
                       '    if not 0 <= percent <= 100:\n        raise ValueError(f"percent must be 0 to 100, '
                       'got {percent}")\n    return round('))),
    Task("empty_average", "average() in metrics.py crashes on an empty list. Make it return 0.0 for one.",
         METRICS_FILES, hidden_tests(METRICS_HIDDEN_TESTS),
         checked(patch("metrics.py", "    return sum(values) / len(values)",
                       "    if not values:\n        return 0.0\n    return sum(values) / len(values)"))),
    Task("missing_settings", "load_settings() in settings_loader.py fails when settings.json does not exist. "
         "Make it return the defaults then.", SETTINGS_FILES, hidden_tests(SETTINGS_HIDDEN_TESTS),
         checked(patch("settings_loader.py", "    with open(path) as file:",
                       "    import os\n    if not os.path.exists(path):\n        return dict(DEFAULTS)\n"
                       "    with open(path) as file:"))),
    Task("extract_money", "report.py formats amounts of money the same way in three places. Extract a "
         "function format_money(amount) and use it in all three.", REPORT_FILES, report_check,
         checked(write("report.py", 'def format_money(amount):\n    return f"${amount:,.2f}"\n\n\n'
                                    'def income_line(amount):\n    return "Income: " + format_money(amount)\n\n\n'
                                    'def expense_line(amount):\n    return "Expenses: " + format_money(amount)\n\n\n'
                                    "def balance_line(income, expenses):\n"
                                    '    return "Balance: " + format_money(income - expenses)\n'))),
    Task("extract_clean", "users.py cleans names the same way in two functions. Extract a helper "
         "clean_name(name) and use it in both.", USERS_FILES, users_check,
         checked(write("users.py", "def clean_name(name):\n    return name.strip().title()\n\n\n"
                                   "def add_member(roster, name):\n    roster.append(clean_name(name))\n\n\n"
                                   "def is_member(roster, name):\n    return clean_name(name) in roster\n"))),
    Task("return_dict", "Change parse_point in geometry.py to return a dict with keys x and y instead of a "
         "tuple, and update the code that uses it.", GEOMETRY_FILES, geometry_check,
         checked(patch("geometry.py", "    return float(x), float(y)", '    return {"x": float(x), "y": float(y)}'),
                 patch("geometry.py", "math.hypot(point[0], point[1])", 'math.hypot(point["x"], point["y"])'))),
    Task("return_none", "Make find_user in db.py return None for an unknown login instead of raising "
         "KeyError, and update the code that calls it.", LOOKUP_FILES, hidden_tests(LOOKUP_HIDDEN_TESTS),
         checked(patch("db.py", "    return USERS[login]", "    return USERS.get(login)"),
                 write("app.py", "from db import find_user\n\n\ndef greet(login):\n    name = find_user(login)\n"
                                 '    return f"Hello, {name}!" if name else "Unknown user"\n'))),
    Task("deprecated_utcnow", "stamps.py uses the deprecated datetime.utcnow(). Replace it with a "
         "timezone-aware call.", STAMPS_FILES, stamps_check,
         checked(patch("stamps.py", "datetime.datetime.utcnow()", "datetime.datetime.now(datetime.timezone.utc)"))),
    Task("deprecated_assert", "test_mathkit.py uses the deprecated assertEquals. Replace it with assertEqual.",
         MATH_FILES, math_check,
         checked(tool("run_shell", command="sed -i 's/assertEquals/assertEqual/' test_mathkit.py"))),
    Task("sorted_tags", "list_tags() in tags.py returns the tags in a different order from run to run. Make "
         "it return them in alphabetical order.", TAGS_FILES, hidden_tests(TAGS_HIDDEN_TESTS),
         checked(patch("tags.py", "    return list(tags)", "    return sorted(tags)"))),
    Task("sorted_json", "export.py writes JSON whose key order depends on how the record was built. Make it "
         "write the keys sorted, so the same record always gives the same file.", EXPORT_FILES,
         hidden_tests(EXPORT_HIDDEN_TESTS),
         checked(patch("export.py", "json.dump(record, file, indent=2)",
                       "json.dump(record, file, indent=2, sort_keys=True)"))),
    Task("big_repo_setting", "Raise the maximum number of retries of the net package from 3 to 5.",
         LIMITS_FILES, limits_check,
         [patch("net/limits.py", "MAX_RETRIES = 3", "MAX_RETRIES = 5"),
          tool("run_shell", command="python -c \"import net.limits as l; print(l.MAX_RETRIES)\""),
          "<final>net.limits.MAX_RETRIES is 5.</final>"]),
    Task("big_repo_bug", "to_celsius gives wrong results (212 Fahrenheit should be 100 Celsius). Fix it.",
         CELSIUS_FILES, hidden_tests(CELSIUS_HIDDEN_TESTS),
         checked(tool("search", pattern="def to_celsius"),
                 patch("units/temperature.py", "(fahrenheit - 32) * 9 / 5", "(fahrenheit - 32) * 5 / 9"))),
]
SESSION_TASKS = [
    Task("go_on_test", "Add a test to test_inventory.py that checks remove() raises ValueError when too many "
         "are removed.", INVENTORY_FILES,
         second_request(tests_catch("test_inventory.py", 1, "inventory.py", INVENTORY_RAISE, "return"),
                        INVENTORY_ANSWER),
         checked(patch("test_inventory.py", "        self.assertEqual(inventory.total(), 4)\n",
                       "        self.assertEqual(inventory.total(), 4)\n\n    def test_remove_too_many(self):\n"
                       "        inventory = Inventory()\n        inventory.add(\"apple\", 2)\n"
                       "        with self.assertRaises(ValueError):\n            inventory.remove(\"apple\", 3)\n"),
                 answer="Added test_remove_too_many."),
         earlier=(INVENTORY_EARLIER,)),
    Task("go_on_blank", "Make parse_price return 0.0 for an empty or blank price instead of raising an error.",
         PRICES_FILES, second_request(hidden_tests(PRICES_HIDDEN_TESTS), PRICES_ANSWER),
         checked(patch("prices.py", "    return float(",
                       '    if not text.strip():\n        return 0.0\n    return float('),
                 answer="parse_price returns 0.0 for a blank price."),
         earlier=(PRICES_EARLIER,)),
]
TASKS = FIRST_TASKS + MORE_TASKS + SESSION_TASKS
KINDS = {   # the kinds of work, each with two tasks: the first tunes the agent, the second is held out
    "answer a question about the code": ("port", "timeout_default"),
    "find where something is defined": ("locate", "find_handler"),
    "fix a bug so the tests pass": ("fix_bug", "off_by_one"),
    "implement a function from its docstring": ("implement", "implement_words"),
    "add a command-line option": ("add_flag", "add_option"),
    "rename across files": ("rename", "rename_class"),
    "write a test": ("write_tests", "edge_case_test"),
    "change a setting or a version": ("config", "version_bump"),
    "add a method to a class": ("add_method_area", "add_method_total"),
    "validate input with a clear error": ("validate_age", "validate_percent"),
    "handle empty or missing input": ("empty_average", "missing_settings"),
    "extract a helper from repeated code": ("extract_money", "extract_clean"),
    "change a return value and its callers": ("return_dict", "return_none"),
    "replace a deprecated call": ("deprecated_utcnow", "deprecated_assert"),
    "make an output's order deterministic": ("sorted_tags", "sorted_json"),
    "work in a repository of 70 files": ("big_repo_setting", "big_repo_bug"),
    "a second request in a session (--resume)": ("go_on_test", "go_on_blank"),
}
HALVES = {"tuning": [first for first, _ in KINDS.values()], "held-out": [second for _, second in KINDS.values()]}


# --- long files: the same tasks with the files a request names as long as real ones -------------

LONG_FILE_HELPERS = '''

def clamp(value, low, high):
    """Keep value between low and high."""
    if low > high:
        raise ValueError("low must not be above high")
    return max(low, min(value, high))


def chunked(items, size):
    """Split items into lists of at most size items, in order."""
    if size < 1:
        raise ValueError("size must be at least 1")
    return [items[start:start + size] for start in range(0, len(items), size)]


def dedupe(items):
    """The items without repeats, first occurrence kept, order kept."""
    seen = set()
    kept = []
    for item in items:
        if item not in seen:
            seen.add(item)
            kept.append(item)
    return kept


def parse_bool(text):
    """Read yes/no, true/false, on/off or 1/0 as a bool."""
    lowered = text.strip().lower()
    if lowered in ("yes", "true", "on", "1"):
        return True
    if lowered in ("no", "false", "off", "0"):
        return False
    raise ValueError("not a yes or no: " + repr(text))


def flatten(nested):
    """One list from a list of lists."""
    flat = []
    for part in nested:
        flat.extend(part)
    return flat


def first_or(items, default=None):
    """The first item, or default when there is none."""
    for item in items:
        return item
    return default


def pairwise_sums(values):
    """Sums of neighbouring values: [1, 2, 4] gives [3, 6]."""
    return [left + right for left, right in zip(values, values[1:])]


def count_words(text):
    """How many words, split on white space, a text has."""
    return len(text.split())


def initials(name):
    """The initials of a name, upper case: Ada Lovelace gives AL."""
    return "".join(part[0].upper() for part in name.split() if part)


def percent(part, whole):
    """part as a percentage of whole, 0.0 when whole is 0."""
    if whole == 0:
        return 0.0
    return 100.0 * part / whole


def title_case(text):
    """Each word of text with its first letter in upper case."""
    return " ".join(word[:1].upper() + word[1:] for word in text.split(" "))


def merge_dicts(*dicts):
    """One dict from several; later ones win."""
    merged = {}
    for part in dicts:
        merged.update(part)
    return merged


def index_by(items, key):
    """A dict from key(item) to item; the last item with a key wins."""
    return {key(item): item for item in items}


def running_total(values):
    """The running totals of values: [1, 2, 3] gives [1, 3, 6]."""
    totals = []
    total = 0
    for value in values:
        total += value
        totals.append(total)
    return totals


def safe_int(text, default=0):
    """text as an int, or default if it is not a whole number."""
    try:
        return int(text)
    except (TypeError, ValueError):
        return default


def truncate(text, width):
    """text cut to width characters, ending in ... when it was cut."""
    if len(text) <= width:
        return text
    return text[:max(width - 3, 0)] + "..."


def is_palindrome(text):
    """Whether text reads the same backwards, ignoring case and spaces."""
    letters = [char.lower() for char in text if not char.isspace()]
    return letters == letters[::-1]
'''


def lengthened(task):
    """The task with generic helpers added (before any main guard) to each Python file its
    request names, so that those files are as long as real ones (over 3,000 chars)."""
    files = dict(task.files)
    for name, text in task.files.items():
        base = name.rsplit("/", 1)[-1]
        if name.endswith(".py") and not base.startswith("test_") and re.search(
                rf"(?<![\w.]){re.escape(base)}\b", task.request):
            guard = re.search(r"^if __name__ == .__main__.:", text, re.MULTILINE)
            at = guard.start() if guard else len(text)
            files[name] = text[:at].rstrip("\n") + "\n" + LONG_FILE_HELPERS + ("\n\n" + text[at:] if guard else "")
    return replace(task, files=files)


# --- running and measuring ----------------------------------------------------------------

def make_repo(task, root):
    """A fresh git repository holding the task's files, committed, and its earlier requests answered."""
    root.mkdir(parents=True)
    for name, text in task.files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for command in (["init", "-q"], ["add", "."], ["-c", "user.email=bench@example.com", "-c", "user.name=bench",
                                                   "commit", "-q", "-m", "start"]):
        subprocess.run(["git", *command], cwd=root, check=True, capture_output=True)
    if task.earlier:
        answer_earlier(task, root)


def agent_module():
    """This checkout's agent, imported: its session format is the one the runs read."""
    if str(AGENT.parent) not in sys.path:   # asked once per run: the path is put in front once
        sys.path.insert(0, str(AGENT.parent))
    import mini_coding_agent
    return mini_coding_agent


def answer_earlier(task, repo):
    """Answer the task's earlier requests with their scripted replies (the coach's draft first), in
    a session the run resumes: it holds what a user's session would."""
    mca = agent_module()
    store = mca.SessionStore(repo / ".mini-coding-agent" / "sessions")
    agent = mca.MiniAgent(mca.FakeModelClient([]), mca.WorkspaceContext.build(repo), store,
                          approval_policy="auto")
    for request, replies in task.earlier:
        agent.model_client.outputs = list(replies)
        agent.ask(request)


def load_session(repo):
    """The session the run left, read by the agent's own loader (or as plain JSON, for older agents)."""
    folder = repo / ".mini-coding-agent" / "sessions"
    paths = list(folder.glob("*.json"))
    if len(paths) != 1:
        return None
    try:
        return agent_module().SessionStore(folder).load(paths[0].stem)
    except ValueError:
        return json.loads(paths[0].read_text())


def session_figures(repo, before=(0, 0)):
    """What the run's session records: model calls, tool steps, malformed replies, tokens; `before`:
    the history items and model calls it held before the run, which are not counted."""
    session = load_session(repo)
    if session is None:
        return {}
    history, stats = session["history"][before[0]:], session.get("stats", [])[before[1]:]
    prompt, cached, new = (sum(row.get(key, 0) for row in stats)
                           for key in ("prompt_eval_count", "prompt_eval_cached_count", "eval_count"))
    malformed = [item for item in history if item["role"] == "assistant"
                 and item["content"].startswith("Runtime notice")]
    return {"calls": len(stats), "steps": sum(item["role"] == "tool" for item in history),
            "malformed": len(malformed), "prompt_tokens": prompt, "cached_tokens": cached, "new_tokens": new,
            "tokens": prompt + new}


def run_task(task, args, root):
    """Run the agent once on a fresh copy of the task; returns the run's figures."""
    repo = root / "repo"
    make_repo(task, repo)
    earlier = load_session(repo) if task.earlier else None
    before = (len(earlier["history"]), len(earlier["stats"])) if earlier else (0, 0)
    command = [sys.executable, str(args.agent), "--cwd", str(repo), "--approval", "auto"]
    command += ["--resume", "latest"] if task.earlier else []
    for flag in ("host", "model", "num_ctx", "max_steps"):
        if getattr(args, flag) is not None:
            command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    command += ["--no-small-model-help"] if args.plain else []
    started = time.monotonic()
    try:
        done = subprocess.run([*command, task.request], capture_output=True, text=True, timeout=args.timeout,
                              stdin=subprocess.DEVNULL, env={**os.environ, "NO_COLOR": "1"})
        answer, exit_code = done.stdout.strip(), done.returncode
    except subprocess.TimeoutExpired:
        answer, exit_code = "", "timeout"
    seconds = time.monotonic() - started
    solved, seen = task.check(repo, answer)
    half = next(name for name, tasks in HALVES.items() if task.name in tasks)
    return {"task": task.name, "half": half, "solved": bool(solved), "exit": exit_code,
            "seconds": round(seconds, 1), "seen": seen, **session_figures(repo, before)}


def median(runs, key):
    """The median of a figure over some runs, or None if none has it."""
    values = [run[key] for run in runs if run.get(key) is not None]
    return statistics.median(values) if values else None


def summary(runs, wall):
    """The figures over all runs: solve rate, and medians per solved task."""
    solved = [run for run in runs if run["solved"]]
    prompt, cached = sum(run.get("prompt_tokens", 0) for run in runs), sum(run.get("cached_tokens", 0) for run in runs)
    return {"runs": len(runs), "solved": len(solved), "solve_rate": round(len(solved) / max(len(runs), 1), 3),
            "median_calls_solved": median(solved, "calls"), "median_seconds_solved": median(solved, "seconds"),
            "median_tokens_solved": median(solved, "tokens"),
            "malformed": sum(run.get("malformed", 0) for run in runs),
            "cached_share": round(cached / prompt, 3) if prompt else None, "wall_seconds": round(wall, 1)}


def print_table(runs, totals):
    """Per task: how many runs solved it, and the median figures of its runs."""
    print(f"\n{'task':17} {'solved':>7} {'calls':>6} {'steps':>6} {'malformed':>9} {'prompt tok':>11} "
          f"{'cached':>7} {'new tok':>8} {'seconds':>8}")
    for task in dict.fromkeys(run["task"] for run in runs):
        mine = [run for run in runs if run["task"] == task]
        prompt = sum(run.get("prompt_tokens", 0) for run in mine)
        cached = sum(run.get("cached_tokens", 0) for run in mine) / prompt if prompt else 0
        cells = [median(mine, key) for key in ("calls", "steps", "malformed", "prompt_tokens")]
        print(f"{task:17} {sum(run['solved'] for run in mine):>3}/{len(mine):<3} "
              + " ".join(f"{'-' if value is None else f'{value:g}':>{width}}"
                         for value, width in zip(cells, (6, 6, 9, 11), strict=True))
              + f" {cached:>7.0%} {median(mine, 'new_tokens') or 0:>8g} {median(mine, 'seconds'):>8.1f}")
    print(f"\nsolved {totals['solved']} of {totals['runs']} runs ({totals['solve_rate']:.0%}); per solved run "
          f"median {totals['median_calls_solved'] or 0:g} calls, {totals['median_tokens_solved'] or 0:.0f} tokens, "
          f"{totals['median_seconds_solved'] or 0:.1f} s; {totals['malformed']} malformed replies; "
          f"wall time {totals['wall_seconds']:.0f} s")


def build_parser():
    parser = argparse.ArgumentParser(description="Run the agent on small coding tasks and check the results.")
    parser.add_argument("--host", help="Ollama server (default: what the agent itself uses)")
    parser.add_argument("--model", help="model name (default: the agent's default)")
    parser.add_argument("--num-ctx", type=int, help="passed on to the agent")
    parser.add_argument("--max-steps", type=int, help="passed on to the agent")
    parser.add_argument("--plain", action="store_true", help="the agent without its small-model help")
    parser.add_argument("--long-files", action="store_true",
                        help="the Python files a request names made as long as real ones (see lengthened)")
    parser.add_argument("--half", choices=sorted(HALVES), help="only the tasks of one half (see KINDS)")
    parser.add_argument("--tasks", help=f"comma-separated, from: {', '.join(task.name for task in TASKS)}")
    parser.add_argument("--repeat", type=int, default=1, help="runs per task (small models are noisy)")
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--agent", type=Path, default=AGENT, help="the agent file to run (to compare versions)")
    parser.add_argument("--timeout", type=int, default=RUN_TIMEOUT, help="seconds allowed per task run")
    parser.add_argument("--keep", type=Path, help="keep each run's repository under this folder")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    wanted = args.tasks.split(",") if args.tasks else HALVES.get(args.half, [task.name for task in TASKS])
    unknown = set(wanted) - {task.name for task in TASKS}
    if unknown:
        sys.exit(f"unknown task(s): {', '.join(sorted(unknown))}")
    tasks = [lengthened(task) for task in TASKS] if args.long_files else TASKS
    plan = [task for task in tasks if task.name in wanted for _ in range(args.repeat)]
    runs, started = [], time.monotonic()
    for number, task in enumerate(plan, 1):
        with tempfile.TemporaryDirectory() as scratch:
            root = args.keep / f"{number:02d}-{task.name}" if args.keep else Path(scratch)
            run = run_task(task, args, root)
        runs.append(run)
        print(f"[{number}/{len(plan)}] {task.name:17} {'solved' if run['solved'] else 'FAILED':6} "
              f"calls {run.get('calls', '-')}, steps {run.get('steps', '-')}, malformed {run.get('malformed', '-')}, "
              f"{run['seconds']} s  ({run['seen']})", flush=True)
    totals = summary(runs, time.monotonic() - started)
    print_table(runs, totals)
    for half in HALVES:
        mine = [run for run in runs if run["half"] == half]
        if mine and len(mine) < len(runs):
            solved = sum(run["solved"] for run in mine)
            print(f"{half} half: solved {solved} of {len(mine)} runs ({solved / len(mine):.0%}), "
                  f"{sum(run['seconds'] for run in mine) / len(mine):.1f} s per run")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "summary": totals}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
