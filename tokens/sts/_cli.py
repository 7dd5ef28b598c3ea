"""``python -m tokens.sts``: the command-line contract of issues 3 and 13.

Subcommands ``dk``, ``credit``, ``mgmt``, ``kct`` and ``decode``. ``kct --ea 07 ... --sgc SGC``
prints the 3-token set (SGC change); ``credit --subclass 4 --units -1`` a currency debit. Keys
are big-endian hex, results go to stdout, errors to stderr with exit status 2 (argparse usage
errors also exit with 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from ._dkga import derive_decoder_key
from ._errors import StsError
from ._tokens import TokenKind, credit_token, decode_token, key_change_tokens, management_token

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._tokens import DecodedToken

__all__ = ["main"]


class _CliError(Exception):
    pass


def _hex(text: str, what: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise _CliError(f"{what} is not valid hex: {text!r}") from None


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise _CliError(f"--units is not a decimal number: {text!r}") from None
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tokens.sts", description="STS token engine (IEC 62055-41).")
    sub = parser.add_subparsers(dest="command", required=True)

    dk = sub.add_parser("dk", help="derive a decoder key (printed as hex)")
    dk.add_argument("--dkga", required=True, help="02 or 04")
    dk.add_argument("--vk", required=True, help="vending key, hex")
    dk.add_argument("--pan", required=True, help="18-digit meter PAN")
    dk.add_argument("--sgc", required=True, help="6-digit supply group code")
    dk.add_argument("--ti", required=True, help="2-digit tariff index")
    dk.add_argument("--krn", required=True, type=int, help="key revision number")
    dk.add_argument("--kt", required=True, type=int, help="key type 0..3")
    dk.add_argument("--bd", default="1993", help="base date 1993|2014|2035 (DKGA04 only)")
    dk.add_argument("--ea", default="07", help="07 or 11 (DKGA04 key length)")

    credit = sub.add_parser("credit", help="generate a class 0 credit token")
    credit.add_argument("--ea", required=True)
    credit.add_argument("--dk", required=True, help="decoder key, hex")
    credit.add_argument("--subclass", type=int, default=0)
    credit.add_argument("--tid", required=True, type=int)
    credit.add_argument("--rnd", type=int, default=None, help="0..15 (random if omitted)")
    amount = credit.add_mutually_exclusive_group(required=True)
    amount.add_argument("--amount-field", type=int, help="raw amount field")
    amount.add_argument(
        "--units", help="amount in kWh (or m3, ...); for subclasses 4..7 currency units, negative for a debit"
    )
    credit.add_argument("--ken", type=int, default=255)
    credit.add_argument("--tables", choices=("production", "sample"), default="production")

    mgmt = sub.add_parser("mgmt", help="generate a class 2 management token")
    mgmt.add_argument("--ea", required=True)
    mgmt.add_argument("--dk", required=True)
    mgmt.add_argument("--subclass", type=int, required=True)
    mgmt.add_argument("--tid", required=True, type=int)
    mgmt.add_argument("--rnd", type=int, default=None)
    mgmt.add_argument("--value", required=True, type=int)
    mgmt.add_argument("--ken", type=int, default=255)
    mgmt.add_argument("--tables", choices=("production", "sample"), default="production")

    kct = sub.add_parser("kct", help="generate a key change token set (one token per line)")
    kct.add_argument("--ea", required=True)
    kct.add_argument("--old-dk", required=True)
    kct.add_argument("--new-dk", required=True)
    kct.add_argument("--ken", type=int, default=255)
    kct.add_argument("--krn", required=True, type=int, help="new KRN")
    kct.add_argument("--kt", required=True, type=int, help="new KT")
    kct.add_argument("--ti", required=True, help="new TI, 2 digits")
    kct.add_argument("--ro", required=True, choices=("0", "1"), help="rollover bit")
    kct.add_argument(
        "--sgc",
        default=None,
        help="new SGC: required for EA11 (4 tokens); for EA07/EA09 it makes the 3-token set (SGC change)",
    )
    kct.add_argument("--tables", choices=("production", "sample"), default="production")

    decode = sub.add_parser("decode", help="decode a token to JSON")
    decode.add_argument("token")
    decode.add_argument("--ea", default=None)
    decode.add_argument("--dk", default=None)
    decode.add_argument("--bd", default=None, help="base date, to add tid_datetime")
    decode.add_argument("--tables", choices=("production", "sample"), default="production")
    return parser


_UNITS_PLACEHOLDER = "\x00units\x00"


def _add_tid(out: dict[str, object], decoded: DecodedToken, base_date: str | None) -> None:
    out["tid"] = decoded.tid
    if base_date is not None:
        dt = decoded.tid_datetime(int(base_date))
        out["tid_datetime"] = None if dt is None else dt.isoformat(timespec="minutes")


def _decoded_json(decoded: DecodedToken, base_date: str | None) -> str:
    out: dict[str, object] = {
        "class": decoded.token_class,
        "subclass": decoded.subclass,
        "kind": str(decoded.kind),
        "block": f"{decoded.block:016X}",
    }
    kind = decoded.kind
    if kind in (TokenKind.CREDIT, TokenKind.CURRENCY_CREDIT, TokenKind.MANAGEMENT):
        if kind is TokenKind.CURRENCY_CREDIT:
            out["se"] = decoded.se
        else:
            out["rnd"] = decoded.rnd
        _add_tid(out, decoded, base_date)
        if kind is TokenKind.MANAGEMENT:
            out["value"] = decoded.value
        else:
            out["amount_field"] = decoded.amount_field
        if decoded.units is not None:
            out["units"] = _UNITS_PLACEHOLDER
    elif kind is TokenKind.KCT1:
        out.update(
            kenho=decoded.kenho, krn=decoded.krn, ro=decoded.ro, res=decoded.res, kt=decoded.kt,
            nkho=f"{decoded.nkho:08X}",
        )  # fmt: skip
    elif kind is TokenKind.KCT2:
        out.update(kenlo=decoded.kenlo, ti=decoded.ti, nklo=f"{decoded.nklo:08X}")
    elif kind is TokenKind.KCT3 and decoded.new_sgc is not None:  # 3rd token of a 64-bit-key set
        out["new_sgc"] = f"{decoded.new_sgc:06d}"
    elif kind in (TokenKind.KCT3, TokenKind.KCT4):
        out.update(sgc_part=decoded.sgc_part, nkmo=f"{decoded.nkmo:08X}")
    elif kind is TokenKind.EXTENDED:  # the payload layout (STS 202-5) is not public: raw bits
        if decoded.tid is not None:
            out["rnd"] = decoded.rnd
            _add_tid(out, decoded, base_date)
        out["data"] = f"{decoded.data:011X}"
    else:  # class 1: control as zero-padded hex like vectors.json (36 or 28 bits), mfr as int
        assert decoded.control is not None
        width = 9 if decoded.subclass == 0 else 7
        out.update(control=f"{decoded.control:0{width}X}", mfr=decoded.mfr)
    text = json.dumps(out)
    # units is written as an exact JSON number (Decimal text), never through float
    return text.replace(json.dumps(_UNITS_PLACEHOLDER), str(decoded.units))


def _run(args: argparse.Namespace) -> str:
    if args.command == "dk":
        key = derive_decoder_key(
            dkga=args.dkga, vending_key=_hex(args.vk, "--vk"), pan=args.pan, sgc=args.sgc, ti=args.ti,
            krn=args.krn, kt=args.kt, base_date=args.bd, ea=args.ea,
        )  # fmt: skip
        return key.hex().upper()
    if args.command == "credit":
        return credit_token(
            ea=args.ea, decoder_key=_hex(args.dk, "--dk"), tid=args.tid, subclass=args.subclass, rnd=args.rnd,
            units=None if args.units is None else _decimal(args.units), amount_field=args.amount_field,
            ken=args.ken, tables=args.tables,
        )  # fmt: skip
    if args.command == "mgmt":
        return management_token(
            ea=args.ea, decoder_key=_hex(args.dk, "--dk"), subclass=args.subclass, tid=args.tid, value=args.value,
            rnd=args.rnd, ken=args.ken, tables=args.tables,
        )  # fmt: skip
    if args.command == "kct":
        tokens = key_change_tokens(
            ea=args.ea, old_key=_hex(args.old_dk, "--old-dk"), new_key=_hex(args.new_dk, "--new-dk"),
            new_krn=args.krn, new_kt=args.kt, new_ti=args.ti, new_ken=args.ken, rollover=args.ro == "1",
            new_sgc=args.sgc, tables=args.tables,
        )  # fmt: skip
        return "\n".join(tokens)
    decoder_key = None if args.dk is None else _hex(args.dk, "--dk")
    decoded = decode_token(args.token, ea=args.ea, decoder_key=decoder_key, tables=args.tables)
    return _decoded_json(decoded, args.bd)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        output = _run(args)
    except (StsError, _CliError) as exc:
        sys.stderr.write(f"error: {type(exc).__name__}: {exc}\n")
        return 2
    sys.stdout.write(output + "\n")
    return 0
