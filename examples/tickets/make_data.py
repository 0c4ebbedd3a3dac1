"""Writes the bundled example task: route a customer-support message to one of four teams.

    python examples/tickets/make_data.py          # rewrites train.jsonl and eval.jsonl beside this file

Chat rows: a one-line system instruction naming the four labels, the customer's message, and the team as the
assistant's reply (exactly one word: billing, shipping, technical or account). The score is exact match after
lower-casing and stripping punctuation, so the answer format is part of the task, as it is for any program that
reads the reply.

The eval set is held out by construction: every message is built from an issue phrase and a product that never
appear in the training file, so the eval measures whether a model learned the routing, not whether it memorised
the training rows (validate-data's train/eval overlap check passes, no 13-word sequence is shared). The output is
deterministic (seeded), so the files in git are what this script writes.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

SYSTEM = "Reply with the team for this message: billing, shipping, technical or account."
LABELS = ("billing", "shipping", "technical", "account")

ISSUES = {
    "billing": [
        "I was charged twice for my {p} order", "my invoice for the {p} shows the wrong amount",
        "the {p} subscription fee went up without notice", "my card was declined when paying for the {p}",
        "I need a VAT receipt for the {p} I bought", "the discount code was not applied to my {p} bill",
        "I was billed for a {p} I cancelled last month", "there is an unknown charge from you for a {p}",
        "my refund for the returned {p} has not reached my bank", "please send a corrected invoice for the {p}",
        "the monthly payment for my {p} plan failed", "I paid for the {p} but my statement shows two payments",
        "can I pay for the {p} in instalments", "the price I was charged for the {p} is higher than listed",
        "I want to change the card you bill for my {p} plan", "why was I charged a late fee on the {p} account",
        "the {p} trial turned into a paid plan without warning", "I need my billing history for the {p}",
        "the tax on my {p} invoice looks wrong", "I was overcharged for shipping insurance on the {p}",
        "my company needs a purchase order number on the {p} invoice", "the annual renewal charge for {p} is wrong",
        "please cancel the pending charge for the {p}", "I got charged in dollars instead of euros for the {p}",
    ],
    "shipping": [
        "my {p} has not arrived yet", "the tracking number for my {p} does not work",
        "the {p} was delivered to the wrong address", "the box with my {p} arrived damaged",
        "the courier left my {p} at a neighbour I do not know", "when will the {p} be delivered",
        "my {p} has been stuck in transit for a week", "can you ship the {p} to Canada",
        "the parcel with the {p} is missing an item", "I need to change the delivery address for my {p}",
        "the delivery of my {p} was marked done but nothing came", "can I pick up the {p} at a store instead",
        "the {p} shipped to my old address", "my {p} order shows shipped but no tracking updates",
        "the driver never came to deliver the {p}", "how long does express delivery of a {p} take",
        "I received someone else's package instead of my {p}", "the {p} was returned to sender by the post office",
        "can the {p} be delivered on Saturday", "the customs office is holding my {p}",
        "I only got half of the {p} order in the parcel", "the {p} came in a wet and torn box",
        "please hold the shipment of my {p} until I am back", "the delivery window for my {p} keeps moving",
    ],
    "technical": [
        "the {p} app crashes when I open it", "my {p} will not connect to wifi",
        "the {p} firmware update failed halfway", "I get error 500 when I open the {p} dashboard",
        "the {p} keeps restarting by itself", "bluetooth pairing with the {p} does not work",
        "the {p} screen stays black after it boots", "the {p} does not sync with my phone",
        "exporting a report from the {p} gives a blank file", "the {p} battery drains in an hour",
        "the {p} web page loads forever", "the {p} shows a license error on start",
        "the {p} stopped responding after the last update", "the microphone on the {p} makes a buzzing noise",
        "the {p} app logs me out every few minutes with an error", "the {p} cannot find my printer",
        "the {p} integration with our calendar throws an exception", "the {p} overheats after ten minutes",
        "the touch controls on the {p} do not react", "the {p} API returns timeouts since this morning",
        "the {p} camera image is blurry after the reset", "notifications from the {p} never show up",
        "the {p} desktop client freezes on startup", "the {p} loses its settings every time it reboots",
    ],
    "account": [
        "I forgot the password for my {p} account", "I want to change the email on my {p} account",
        "please delete my {p} account", "I am locked out of my {p} account after too many tries",
        "I lost the phone I used for two-factor login on {p}", "can I change my {p} username",
        "I want to merge my two {p} accounts", "my {p} account was hacked and the email was changed",
        "how do I add a second user to my {p} account", "I never got the verification email for {p}",
        "please update the phone number on my {p} profile", "I want to download all my {p} account data",
        "my {p} login says the account does not exist", "I need to transfer my {p} account to a colleague",
        "can you remove my old address from my {p} profile", "the reset link for my {p} password has expired",
        "I want to turn off marketing emails for my {p} account", "my {p} account shows someone else's name",
        "how do I close the {p} account of my late father", "I cannot sign in to {p} with my Google login",
        "please unlock my {p} account", "I want to change the owner of our team's {p} account",
        "my {p} security questions are not accepted", "I created a {p} account by mistake and want it gone",
    ],
}
PRODUCTS_TRAIN = ["smart thermostat", "headphones", "laptop", "coffee machine", "router", "fitness watch",
                  "Pro plan", "photo printer", "e-reader", "vacuum robot", "tablet", "webcam"]
PRODUCTS_EVAL = ["doorbell camera", "sound bar", "standing desk", "Team plan", "drone", "smart lock"]
OPENERS = ["", "", "Hi, ", "Hello, ", "Good morning, ", "Hi there, ", "Hey, ", "Dear support, ", "Urgent: ",
           "Quick question: ", "Sorry to bother you, ", "Hello team, "]
CLOSERS = ["", "", ".", ". Thanks.", ". Please help.", "!", ". Can you fix this?", ". What should I do?",
           ". Thank you in advance.", ". This is the second time I write.", ". Order 4471.", ". Regards, Sam"]


def message(rng: random.Random, issue: str, product: str) -> str:
    text = issue.format(p=product)
    opener = rng.choice(OPENERS)
    if opener:
        text = opener + text
    else:
        text = text[0].upper() + text[1:]
    return text + rng.choice(CLOSERS)


def rows(rng: random.Random, issues: dict[str, list[str]], products: list[str], count: int) -> list[dict]:
    out, seen = [], set()
    while len(out) < count:
        label = LABELS[len(out) % len(LABELS)]
        text = message(rng, rng.choice(issues[label]), rng.choice(products))
        if text.lower() in seen:
            continue
        seen.add(text.lower())
        out.append({"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text},
                                 {"role": "assistant", "content": label}]})
    rng.shuffle(out)
    return out


def main() -> None:
    rng = random.Random(16)
    train_issues, eval_issues = {}, {}
    for label, phrases in ISSUES.items():
        shuffled = phrases[:]
        rng.shuffle(shuffled)
        train_issues[label], eval_issues[label] = shuffled[8:], shuffled[:8]
    here = Path(__file__).resolve().parent
    for name, issues, products, count in (("train", train_issues, PRODUCTS_TRAIN, 480),
                                          ("eval", eval_issues, PRODUCTS_EVAL, 160)):
        with open(here / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            for row in rows(rng, issues, products, count):
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
