"""What `kiosk board` and `kiosk-provision selftest` say to a technician, in Chinese or English
(kiosk.textfile.pick_lang: `--lang`, $KIOSK_LANG, the locale).

Owns: the words of the board commands' output (status lines, self-test lines and table, the
`--drop` warning and its confirmation, what each outcome and slot check means) as a table
key -> (zh, en), like kiosk.textfile's. JSON output keeps its English field values (machines
read it); only the lines for people are worded here.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from kiosk.hardware.protocol import Outcome
from kiosk.textfile import os_reason, pick_lang, say_in

__all__ = [
    "BOARD_MESSAGES",
    "describe_check",
    "describe_outcome",
    "kind_name",
    "pad",
    "protocol_name",
    "reason_words",
    "said",
    "zh",
]

BOARD_MESSAGES: Mapping[str, tuple[str, str]] = {
    # where a slot is: the number on the screen first, the bus place as a labelled detail
    "slot": ("{slot} 号货道", "slot {slot}"),
    "slot_at": ("{slot} 号货道（{place}）", "slot {slot} ({place})"),
    "place_vmc": ("VMC 选货号 {n}", "VMC selection {n}"),
    "place_lock": ("锁控板 {address} 锁 {index}", "lock board {address} lock {index}"),
    "place_board": ("控制板 {address} 地址 {index}", "board {address} address {index}"),
    # names: a protocol, a kind of cabinet or slot
    "proto_kiosk": ("本项目协议的控制板", "our own board protocol"),
    "proto_vmc": ("VMC 售货机", "VMC"),
    "proto_modbus": ("Modbus 锁控板", "Modbus lock board"),
    "kind_spiral": ("弹簧货道", "spiral"),
    "kind_belt": ("履带货道", "belt"),
    "kind_locker": ("格子柜", "locker"),
    "kind_mixed": ("混合（货道和格子柜）", "mixed"),
    "no_slots": ("没有货道", "no slots"),
    "sep": ("；", "; "),
    "outcome_line": ("tx {tx}：{outcome}（{what}）", "tx {tx}: {outcome} ({what})"),
    "ident": (
        "{protocol}：{model}，序列号 {serial}，固件 {firmware}，协议 {version}，{kind}，{n} 个货道",
        "{protocol}: {model} serial {serial} firmware {firmware} protocol {version}, {kind} "
        "{n} slots",
    ),
    "ident_vmc_no_planogram": (
        "；没有货道表：检查的是 VMC 同步后报告的选货号（没报告的不检查）",
        "; no planogram: its slots are the selections the VMC reported after the sync (a "
        "selection it did not report is not checked)",
    ),
    "ident_config_says": ("；配置里写的是 {cabinet}", "; config says {cabinet}"),
    # status
    "st_vmc": (
        "{where} 上的 VMC（由 kiosk 应答它的轮询）：{model}",
        "VMC at {where} (the kiosk answers its polls): {model}",
    ),
    "st_vmc_memory": (
        "交易记录：无（VMC 不记录出货）",
        "outcome memory: none (a VMC keeps no record of vends)",
    ),
    "st_vmc_temp": ("温度：VMC 协议不报告温度", "temperature: not reported by the VMC protocol"),
    "st_door": ("门：{state}", "door: {state}"),
    "st_lock_board": (
        "{where} 上的锁控板 {address}（{serial}）：{n} 把锁",
        "lock board {address} ({serial}) at {where}: {n} locks",
    ),
    "st_lock_memory": (
        "交易记录：无（锁控板不记录开锁）",
        "outcome memory: none (a lock board keeps no record of releases)",
    ),
    "st_open_doors": ("开着的门：{doors}", "open doors: {doors}"),
    "st_board": (
        "{where} 上的控制板 {address}：{model}，序列号 {serial}，固件 {firmware}，协议 {protocol}",
        "board {address} at {where}: {model}, serial {serial}, firmware {firmware}, "
        "protocol {protocol}",
    ),
    "st_cabinet": ("货柜：{kind}，{n} 个货道{chilled}", "cabinet: {kind}, {n} slots{chilled}"),
    "st_chilled": ("，冷藏", ", chilled"),
    "st_memory_kept": (
        "交易记录：{n} 笔，重启后保留",
        "outcome memory: {n} tx, kept across reboots",
    ),
    "st_memory_lost": ("交易记录：{n} 笔，重启后丢失", "outcome memory: {n} tx, lost on reboot"),
    "st_temp": ("温度：{temp}", "temperature: {temp}"),
    "st_no_sensor": ("没有温度传感器", "no sensor"),
    "st_service_door": ("维修门：{state}", "service door: {state}"),
    "open": ("开着", "OPEN"),
    "closed": ("关着", "closed"),
    "none": ("无", "none"),
    "st_present": (
        "有货的货道（屏幕编号）：{slots}",
        "slots with product (as on the screen): {slots}",
    ),
    "st_present_bus": (
        "有货的位置（控制板地址）：{slots}",
        "board addresses with product: {slots}",
    ),
    "st_busy": ("忙：是，tx={tx}", "busy: yes, tx={tx}"),
    "st_idle": ("忙：否", "busy: no"),
    "st_faults": ("故障：{faults}", "faults: {faults}"),
    "st_screen_slots": ("货道（屏幕编号）：{slots}", "slots (as on the screen): {slots}"),
    "st_bus_slots": (
        "货道（控制板地址，没有货道表）：{slots}",
        "slots (board addresses, no planogram): {slots}",
    ),
    "st_reported_none": (
        "已报告的选货号：无（同步后 VMC 没有发来选货信息 0x11）",
        "selections reported: none (no selection info (0x11) came after the sync)",
    ),
    "st_reported": (
        "已报告的选货号：{n} 个（VMC 选货号 {span}）{more}",
        "selections reported: {n} (VMC selections {span}){more}",
    ),
    "st_reported_more": (
        "；报告可能不完整（统计时还在发送）",
        "; report may be incomplete (still coming when counting stopped)",
    ),
    "st_not_vmc": ("已报告的选货号：不是 VMC", "selections reported: not a VMC"),
    "reason_cannot_open": ("无法打开 {port}：{why}", "cannot open {port}: {why}"),
    "reason_no_answer": (
        "控制板 {address}：发送 {n} 次都没有应答",
        "board {address}: no answer after {n} transmissions",
    ),
    # vend / unlock
    "not_in_planogram": (
        "错误：{slot} 号货道不在货道表里（货道：{slots}）",
        "error: slot {slot} is not in the planogram (slots: {slots})",
    ),
    "tx_start_unlock": (
        "{name}：{command}，tx={tx}：开锁并监视柜门：打开门，检查商品，再关上",
        "{name}: {command} with tx={tx}: releases the lock and watches the door: "
        "open it, check the item, close it",
    ),
    "tx_start_vend": (
        "{name}：{command}，tx={tx}：电机转一圈：掉出一件商品",
        "{name}: {command} with tx={tx}: runs the motor once: one item drops",
    ),
    "tx_timeout": (
        "{name}：{seconds} 秒后仍是 {outcome}，tx={tx}：稍后用 "
        "`kiosk board outcome --tx {tx}` 再问",
        "{name}: {outcome} after {seconds} s, "
        "tx={tx}: ask again later with `kiosk board outcome --tx {tx}`",
    ),
    "tx_result": (
        "{name}：{outcome}（{what}）tx={tx}，用时 {seconds} 秒",
        "{name}: {outcome} ({what}) tx={tx} in {seconds} s",
    ),
    "tx_asking": (
        "{name}：{reason}；正在询问控制板 tx={tx} 的结果",
        "{name}: {reason}; asking the board what tx={tx} did",
    ),
    "count_now": (
        "{slot} 号货道的库存现在是 {level}（减去了一件）",
        "count of slot {slot} now {level} (one item taken off)",
    ),
    "count_unchanged": ("库存没有改动：{error}", "count not changed: {error}"),
    "no_store": (
        "没有柜机的存储（请用 --config）：柜机的库存没有改动",
        "no kiosk store (give --config): the kiosk's count was not changed",
    ),
    # selftest
    "fail_mark": ("  <-- 失败", "  <-- FAIL"),
    "checking": (
        "自检：检查 {n} 个货道，不运行电机或锁（{protocols}）",
        "selftest: checking {n} slots without running them ({protocols})",
    ),
    "vmc_no_planogram": (
        "自检：没有货道表：检查 VMC 同步后报告的 {n} 个选货号（没报告的不检查；可用 --slots 指定）",
        "selftest: no planogram: checking the {n} selections the VMC reported after its sync "
        "(a selection it did not report is not checked; give --slots)",
    ),
    "check_line": ("{name}：{state}（{detail}）", "{name}: {state} ({detail})"),
    "summary": (
        "自检：{ok}/{n} 个货道正常（{mode}）{failed}",
        "selftest: {ok}/{n} slots ok ({mode}){failed}",
    ),
    "summary_failed": ("，失败：{slots}", ", failed: {slots}"),
    "mode_run": ("已运行", "run"),
    "mode_check": (
        "只检查、没有运行（`--drop` 会逐个运行）",
        "checked without running (`--drop` runs each slot)",
    ),
    "drop_spirals": (
        "{n} 个货道（{span}）的电机各转一次：每个货道掉出一件商品，请在取货口取走",
        "runs the motor of {n} slots ({span}) once each: ONE ITEM DROPS FROM EACH, collect "
        "them at the pickup port",
    ),
    "drop_lockers": (
        "{n} 个格子柜门（{span}）逐个开锁：请打开每扇门再关上",
        "releases the lock of {n} lockers ({span}) one by one: open each door and close it again",
    ),
    "drop_counted": (
        "每件掉出的商品（每扇开过又关上的门）都会作为测试出货从柜机库存中减去",
        "every item that dropped (and every locker opened and closed) is taken off the kiosk's "
        "count as a test vend",
    ),
    "drop_not_counted": (
        "没有柜机的存储（请用 --config）：柜机的库存不会改动",
        "no kiosk store (give --config): the kiosk's counts are NOT changed",
    ),
    "drop_warning": ("自检 --drop：{what}", "selftest --drop: {what}"),
    "drop_all": (
        "每个货道运行一次：每个螺旋货道掉出一件商品（请在取货口取走），每个格子柜门开锁"
        "（打开再关上）；每件掉出的商品都会作为测试出货从柜机库存中减去",
        "every slot runs once: ONE ITEM DROPS FROM EACH spiral slot (collect them at the pickup "
        "port), each locker releases (open and close its door); every item that dropped is "
        "taken off the kiosk's count as a test vend",
    ),
    "drop_confirm": (
        "继续吗？输入 y 开始，其他任意键取消：",
        "Go on? Type y to start, anything else aborts: ",
    ),
    "drop_aborted": ("已取消：没有运行任何货道。", "aborted: no slot was run."),
    "drop_needs_yes": (
        "错误：--drop 会让商品掉出：没有终端可以确认，请加 --yes 确认（什么都没有运行）。",
        "error: --drop drops goods: with no terminal to confirm on, add --yes (nothing was run).",
    ),
    # kiosk-provision selftest's table
    "col_check": ("检查项", "CHECK"),
    "col_result": ("结果", "RESULT"),
    "col_detail": ("详情", "DETAIL"),
    "res_ok": ("通过", "OK"),
    "res_fail": ("失败", "FAIL"),
    "res_skip": ("跳过", "SKIP"),
    "res_warn": ("注意", "WARN"),
    "verdict_pass": ("自检 {kiosk}：通过", "selftest {kiosk}: PASS"),
    "verdict_fail": ("自检 {kiosk}：未通过：{failed}", "selftest {kiosk}: FAIL: {failed}"),
    "report_saved": ("报告：{file}", "report: {file}"),
    "report_not_saved": ("报告没有保存到 {dir}：{reason}", "report not saved in {dir}: {reason}"),
    "queued": ("已排队发送给省平台（事件 {id}）", "queued for the province as event {id}"),
    "not_queued": ("没有排队发送给省平台：{error}", "not queued for the province: {error}"),
    "skipped": ("已跳过（--skip {name}）", "skipped (--skip {name})"),
    "slots_ready": (
        "{ok}/{n} 个就绪，只检查、没有运行（--drop 会逐个运行一次）",
        "{ok}/{n} ready, checked without running (--drop runs each slot once)",
    ),
    "slots_ok": ("{ok}/{n} 个正常", "{ok}/{n} ok"),
    "slots_failed": ("；失败：{slots}", "; failed: {slots}"),
    "board_silent": (
        "控制板 {address} 不应答：{error}",
        "board {address} does not answer: {error}",
    ),
    "doors": ("维修门{state}{lockers}", "service door {state}{lockers}"),
    "doors_lockers": ("，开着的格子柜门：{doors}", ", open locker doors: {doors}"),
    "drop_sensor_ok": ("掉货传感器无故障", "no drop sensor fault"),
    "drop_sensor_bad": ("掉货传感器故障", "drop sensor fault"),
    "drop_sensor_vmc": (
        "VMC 只在出货结果里报告掉货传感器",
        "a VMC reports its drop sensor only in a vend's result",
    ),
    "drop_sensor_lock": ("锁控板没有掉货传感器", "a lock board has no drop sensor"),
    "temp_no_reading": ("冷藏柜没有温度读数", "chilled cabinet without a reading"),
    "temp_limit": ("{t} °C（上限 {limit} °C）", "{t} °C (limit {limit} °C)"),
    "temp_ambient": ("{t} °C（非冷藏）", "{t} °C (not chilled)"),
    "temp_none": ("没有温度传感器（常温）", "no sensor (ambient)"),
    "disk": (
        "{path} 剩余 {free} MB（需要 {need} MB）",
        "{free} MB free at {path} (need {need} MB)",
    ),
    "screen_headless": (
        "无屏幕（SDL_VIDEODRIVER={driver}，--headless={headless}）",
        "headless (SDL_VIDEODRIVER={driver}, --headless={headless})",
    ),
    "address": ("地址 {address}", "address {address}"),
    "slot_address": ("{slot} 号货道（地址 {address}）", "slot {slot} (address {address})"),
    "failed_address": ("地址 {address} {outcome}", "address {address} {outcome}"),
    "failed_slot": ("{slot} {outcome}（地址 {address}）", "{slot} {outcome} (address {address})"),
    "screen_none": ("没有显示屏：{error}", "no display: {error}"),
    "screen_ok": (
        "{driver} 显示屏 {size}（配置 {want}）",
        "{driver} display {size} (config {want})",
    ),
    "broker_plain": (
        "TCP {host}:{port}（明文，仅限演示）",
        "TCP {host}:{port} (plaintext, demo only)",
    ),
    "broker_tls": (
        "TLS {version} 连到 {host}:{port}，服务器已验证，{mutual}",
        "TLS {version} to {host}:{port}, server verified, {mutual}",
    ),
    "client_cert": ("有客户端证书", "client cert"),
    "no_client_cert": ("还没有客户端证书", "no client cert yet"),
    "broker_tls_failed": (
        "到 {host}:{port} 的 TLS 失败：{error}",
        "TLS to {host}:{port} failed: {error}",
    ),
    "broker_unreachable": (
        "连不上 {host}:{port}：{reason}",
        "cannot reach {host}:{port}: {reason}",
    ),
    "clock_unset": ("：时钟没有设置（NTP/RTC？）", ": clock not set (NTP/RTC?)"),
}

_OUTCOMES_ZH: Mapping[Outcome, str] = {
    Outcome.ACCEPTED: "已开始",
    Outcome.IN_PROGRESS: "仍在运行",
    Outcome.DELIVERED: "掉货传感器确认已出货",
    Outcome.NOTHING_DROPPED: "电机转了，掉货传感器没有看到商品",
    Outcome.JAMMED: "电机卡住或没有回到原位",
    Outcome.MOTOR_MISSING: "这个货道没有接电机",
    Outcome.SLOT_EMPTY: "存在传感器显示无货；电机没有运行",
    Outcome.DOOR_OPENED_AND_CLOSED: "门打开后又关上了",
    Outcome.DOOR_NOT_OPENED: "锁已打开，但门没有被打开；已重新上锁",
    Outcome.DOOR_NOT_CLOSED: "门打开了，到控制板超时仍开着",
    Outcome.BUSY: "另一笔交易正在运行；没有开始",
    Outcome.UNKNOWN_TX: (
        "控制板没有这笔交易的记录：若控制板每次复位都保留了记录，就是没有执行过；否则结果不明，"
        "请查看取货口"
    ),
    Outcome.INVALID_SLOT: "控制板上没有这个货道",
    Outcome.WRONG_SLOT_KIND: "货道类型不对（出货用于螺旋/履带货道，开锁用于格子柜）",
    Outcome.TX_CONFLICT: "这个 tx 已经用于别的命令或货道",
    Outcome.REFUSED_FAULT: "已拒绝：控制板有故障（维修门开着？）",
    Outcome.INTERRUPTED: "不知道结果（复位或报告丢失）：商品可能掉了也可能没有，请查看取货口",
    Outcome.LOCK_FAILED: "锁没有打开",
}

_REASONS_ZH: Mapping[str, str] = {
    "port open, no board has answered yet": "串口已打开，但还没有控制板应答",
    "no answer": "没有应答",
    "not started": "还没有开始连接",
    "link closed": "连接已关闭",
    "port cannot be opened": "串口无法打开",
}

_CHECKS_ZH: Mapping[str, str] = {
    "READY": "就绪，没有运行电机或锁",
    "SLOT_EMPTY": "存在传感器显示无货",
    "INVALID_SLOT": "没有这个货道",
    "REFUSED_FAULT": "控制板有故障",
    "DOOR_OPEN": "柜门开着",
    "NO_ANSWER": "控制板没有应答",
}


_CANNOT_OPEN = re.compile(r"^cannot open (?P<port>\S+): .*?\[Errno (?P<errno>\d+)\]")
_NO_ANSWER = re.compile(r"^board (?P<address>\d+): no answer after (?P<n>\d+) transmissions$")


def reason_words(reason: str) -> str:
    """Why a link is not online (kiosk.hardware.link: the driver's and pyserial's English) in
    the user's language: a port that cannot be opened by its errno's meaning (once, not
    pyserial's sentence around it), the usual reasons worded."""
    if m := _CANNOT_OPEN.match(reason):
        why = os_reason(OSError(int(m["errno"]), ""))
        return said("reason_cannot_open", port=m["port"], why=why)
    if not zh():
        return reason
    if m := _NO_ANSWER.match(reason):
        return said("reason_no_answer", address=m["address"], n=m["n"])
    return _REASONS_ZH.get(reason, reason)


def kind_name(kind: str) -> str:
    """A cabinet or slot kind ("spiral", "mixed"...) as the user reads it."""
    key = f"kind_{kind.lower()}"
    return said(key) if key in BOARD_MESSAGES else kind.lower()


def protocol_name(protocol: str) -> str:
    """ "kiosk", "vmc", "modbus" as the user reads it."""
    return said(f"proto_{protocol}")


def zh(lang: str | None = None) -> bool:
    return (lang or pick_lang()) == "zh"


def said(key: str, /, **fields: object) -> str:
    """The board message `key` in the user's language (kiosk.textfile.pick_lang)."""
    return say_in(BOARD_MESSAGES, key, None, **fields)


def describe_outcome(outcome: Outcome, english: str) -> str:
    """What `outcome` means: `english` (the command's own words), or in Chinese."""
    return _OUTCOMES_ZH.get(outcome, english) if zh() else english


def describe_check(state: str, detail: str) -> str:
    """A slot check's detail (the protocol's own English terms) in the user's language."""
    return _CHECKS_ZH.get(state, detail) if zh() else detail


def width(text: str) -> int:
    """Columns `text` takes in a terminal (a CJK character takes two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def pad(text: str, columns: int) -> str:
    return text + " " * max(0, columns - width(text))
