"""What the config's problems say, in Chinese and English, and where in the file they are.

Owns: `CONFIG_MESSAGES`, the words of every problem kiosk.config finds (key -> (zh, en), the
same `{fields}` in both; kiosk.config keeps only a key and its fields and renders them when
shown, in the language kiosk.textfile.pick_lang chooses), and `key_lines`, the line each key
of a config file is on.

Decision on lines: tomllib gives no positions, so `key_lines` scans the file's text once: it
follows `[table]` and `[[array]]` headers (the n-th `[[board]]` is `board[n]`, as the problems
name it), `key = ...` and dotted `a.b = ...` lines, and skips multi-line strings. A problem
about a key written in the file says its line ("第 N 行" / "line N"); one about a key not in
the file (missing, or a default that clashes with another key) says the line of its table's
header when there is one (where to add it); one the scan cannot place (an inline table, a
section not in the file) names the table and key only, never a guessed line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["CONFIG_MESSAGES", "key_lines", "locate"]

# Problem words: kiosk.config.Problem(key, fields). Rendered after "<file>: <key> = <value>: ".
CONFIG_MESSAGES: Mapping[str, tuple[str, str]] = {
    # --- one problem, laid out (kiosk.config.ConfigIssue) -----------------------------------
    "issue": ("{file}：{key} = {value}：{problem}", "{file}: {key} = {value}: {problem}"),
    "issue_at": (
        "{file} 第 {line} 行：{key} = {value}：{problem}",
        "{file}, line {line}: {key} = {value}: {problem}",
    ),
    "issue_file": ("{file}：{problem}", "{file}: {problem}"),
    "missing_value": ("（未填写）", "(missing)"),
    "config_not_found": (
        "{file}：文件不存在。新机器请先运行 `kiosk-provision init` 生成配置，"
        "或用 --config 指定配置文件。",
        "{file}: file not found. On a new kiosk run `kiosk-provision init` to write one, or "
        "give --config.",
    ),
    # --- a value of the wrong type (kiosk.config._convert) ----------------------------------
    "not_string": (
        '必须是文字，要用英文双引号括起来，例如 "..."',
        "must be a string",
    ),
    "not_int": ("必须是整数（不加引号），例如 6", "must be a whole number"),
    "not_number": ("必须是数字（不加引号），例如 8.0", "must be a number"),
    "not_bool": ("只能写 true 或 false（小写，不加引号）", "must be true or false"),
    "not_path": (
        "必须是用英文双引号括起来的文件路径",
        "must be a path string",
    ),
    "boards_empty": (
        "必须是非空的整数列表，例如 [0] 或 [0, 1]",
        "must be a non-empty list of whole numbers",
    ),
    "boards_range": (
        "必须是 0 到 15 之间的控制板地址列表（0 = 主板）",
        "must be a list of board addresses 0..15 (0 = main board)",
    ),
    "boards_twice": ("同一个地址不能写两次", "must not repeat an address"),
    # --- rules (kiosk.config.RULES) ---------------------------------------------------------
    "one_of": ("只能是以下之一：{allowed}", "must be one of {allowed}"),
    "range": ("必须在 {lo} 到 {hi} 之间", "must be between {lo} and {hi}"),
    "above_0_max_10": ("必须大于 0，且不超过 10", "must be above 0, at most 10"),
    "not_empty": ("不能为空", "must not be empty"),
    "port_empty": (
        "必须写串口设备名或串口网址，例如 /dev/ttyUSB0",
        "must name a serial port or URL",
    ),
    "url_one": ("必须是以 {a} 开头的网址", "must be a URL starting with {a}"),
    "url_two": ("必须是以 {a} 或 {b} 开头的网址", "must be a URL starting with {a} or {b}"),
    "kiosk_id": (
        "格式必须是 AH-<6 位行政区划代码>-<4 到 8 位数字或大写字母>，例如 AH-340102-0007",
        "must be AH-<6-digit GB/T 2260 area code>-<4 to 8 digits or capital letters>",
    ),
    "area_code": (
        "必须是 34 开头的 6 位行政区划代码（GB/T 2260，安徽省）",
        "must be a 6-digit GB/T 2260 code in Anhui (34xxxx)",
    ),
    "fingerprint": (
        "必须留空，或填写 SHA-256 指纹（64 位十六进制数字，可以带冒号）",
        "must be empty or a SHA-256 fingerprint (64 hex digits, colons allowed)",
    ),
    "pin_hash": (
        "必须留空，或是 pbkdf2_sha256$<迭代次数>$<盐>$<哈希> 格式的密码哈希"
        "（由 kiosk-provision 生成，请不要手工填写）",
        "must be empty or pbkdf2_sha256$<iterations>$<salt hex>$<hash hex> "
        "(kiosk-provision makes it)",
    ),
    # --- sections and keys (kiosk.config.parse_config) --------------------------------------
    "unknown_section": (
        "没有这个节（可能是拼写错误）；可用的节：{allowed}",
        "unknown section; allowed: {allowed}",
    ),
    "not_table": (
        "必须是一个节：单独一行写 [节名]，下面再写各项设置",
        "must be a [section] table",
    ),
    "section_required": ("缺少这个节：配置里必须有它", "section is required"),
    "unknown_key": (
        "[{section}] 里没有这一项（可能是拼写错误）；可用的项：{allowed}",
        "unknown key; allowed in [{section}]: {allowed}",
    ),
    "key_required": ("缺少这一项：必须填写", "required key is missing"),
    # --- [[service.technicians]] ------------------------------------------------------------
    "techs_not_list": (
        '必须写成表格数组：[[service.technicians]] 下面写 id = "T0042" 和 pin_hash = "..."',
        'must be a list of tables: [[service.technicians]] id = "T0042" pin_hash = "..."',
    ),
    "tech_keys": (
        "第 {i} 个技术员：必须正好有 id 和 pin_hash 两项",
        "technician {i}: needs exactly the keys id and pin_hash",
    ),
    "tech_id": (
        "第 {i} 个技术员：编号 {tid!r} 只能由 1–32 个字母、数字或 . _ - 组成",
        "technician {i}: id {tid!r} must be 1-32 letters, digits, . _ or -",
    ),
    "tech_pin_hash": (
        "第 {i} 个技术员（{tid}）：pin_hash 必须是 pbkdf2_sha256$<迭代次数>$<盐>$<哈希> 格式"
        "（用 kiosk-provision pin 设置密码，请不要手工填写）",
        "technician {i} ({tid}): pin_hash must be pbkdf2_sha256$<iterations>$<salt hex>$"
        "<hash hex> (kiosk-provision makes it)",
    ),
    "tech_twice": (
        "第 {i} 个技术员：编号 {tid} 已经出现过一次",
        "technician {i}: id {tid} is listed twice",
    ),
    "tech_id_taken": (
        "编号 {tid} 已被 ui.service_pin_hash 占用：请换一个编号，"
        "或把那个密码移到 [[service.technicians]] 里",
        "id {tid} is taken by ui.service_pin_hash; use another id or move that PIN into "
        "[[service.technicians]]",
    ),
    "demo_pin": (
        "这是公开的演示密码，接真实省平台（MQTT 服务器不在本机）时不允许使用："
        "请用 kiosk-provision pin 为技术员设置自己的密码",
        "is the published demo PIN, refused with a real province (a broker not on this "
        "machine): set the technician's own PIN with kiosk-provision pin",
    ),
    # --- [[board]] --------------------------------------------------------------------------
    "board_not_tables": (
        "必须写成 [[board]] 表格：每块控制板一段，例如 [[board]] 下面写 address = 0 和 "
        'protocol = "kiosk"',
        'must be [[board]] tables: [[board]] address = 0 protocol = "kiosk"',
    ),
    "board_unknown_key": (
        "协议 {protocol} 的控制板没有这一项；可用的项：{allowed}",
        "unknown key for protocol {protocol}; allowed: {allowed}",
    ),
    "board_port_required": (
        "必须填写这块控制板的串口（所有 modbus-locks 控制板共用一个串口时，"
        "也可以设置 modbus.port）",
        "required: the serial port of this board (or set modbus.port for all modbus-locks boards)",
    ),
    "board_no_table": (
        "货道表里有 {boards} 号控制板上的货道，但没有对应的 [[board]] 段："
        "请为每块控制板加一段（address、protocol、port）",
        "the planogram has slots on board(s) {boards}, which no [[board]] table names: add one "
        "per board (address, protocol, port)",
    ),
    "board_wrong_kind": (
        "只能驱动 {kind} 类型的货道；货道表里 {address} 号控制板上的货道 {slots}{more} "
        "不是这种类型",
        "drives {kind} slots only; the planogram's slots {slots}{more} on board {address} are not",
    ),
    "board_address_twice": (
        "board[{j}] 已经用了这个地址：每块控制板只写一段",
        "board[{j}] has this address already: one table per board",
    ),
    "vmc_baud": (
        "VMC 的波特率固定是 57600：请改成 57600",
        "a VMC speaks 57600 baud: use 57600",
    ),
    "board_unit_twice": (
        "board[{j}] 在 {port} 上已经是 Modbus 站号 {unit}",
        "board[{j}] on {port} is Modbus unit {unit} already",
    ),
    "port_other_protocol": (
        "board[{j}]（协议 {protocol}）已经在这个串口上；一个串口只能走一种协议："
        "请给这块控制板单独的串口",
        "board[{j}] (protocol {protocol}) is on this port already; a port carries one "
        "protocol: give this board its own port",
    ),
    "port_one_vmc": (
        "board[{j}] 已经是这个串口上的 VMC：一个串口只能接一台 VMC",
        "board[{j}] is a VMC on this port already: one VMC per serial port",
    ),
    "port_one_baud": (
        "board[{j}] 在这个串口上用的是 {baud} 波特：同一条总线只能用一种波特率",
        "board[{j}] on this port runs at {baud} baud: one bus, one baud rate",
    ),
    "board_protocol_here": (
        "用了 [[board]] 后由每块控制板各自写协议：请删掉 hardware.protocol",
        "with [[board]] each board names its protocol: leave hardware.protocol out",
    ),
    "board_addresses_differ": (
        "和 [[board]] 里的地址 {addresses} 不一致：请删掉这一项",
        "differs from the [[board]] addresses {addresses}: leave it out",
    ),
    "board_locks_here": (
        '用了 [[board]] 后，锁控板写成 [[board]] 段并设 protocol = "modbus-locks"：'
        "请删掉 modbus.locks",
        'with [[board]] lock boards are [[board]] protocol = "modbus-locks": leave '
        "modbus.locks out",
    ),
    "sensor_port_taken": (
        "温湿度传感器的 Modbus 线路是 {address} 号控制板的 {protocol} 串口：一个串口只能走一种协议",
        "the sensor's Modbus line is board {address}'s {protocol} port: one port carries "
        "one protocol",
    ),
    "sensor_unit_taken": (
        "board[{j}]（锁控板）在 {port} 上已经用了这个站号",
        "board[{j}] (a lock board) is this unit on {port}",
    ),
    # --- [modbus] ---------------------------------------------------------------------------
    "modbus_port_needed": (
        "设置了 modbus.locks 或 modbus.sensor_unit 就必须填写 RS-485 串口（例如 /dev/ttyUSB1）",
        "modbus.locks or modbus.sensor_unit needs the RS-485 port (e.g. /dev/ttyUSB1)",
    ),
    "modbus_locks_locker": (
        'Modbus 锁控板只用于格子柜：请设置 hardware.cabinet = "locker"',
        'Modbus lock boards drive a locker cabinet: set hardware.cabinet = "locker"',
    ),
    # --- keys checked against each other ----------------------------------------------------
    "area_differs": (
        "柜号里的区划代码（{id_area}）和 identity.area_code（{area}）不一致",
        "area code in the id ({id_area}) differs from identity.area_code ({area})",
    ),
    "locker_capacity": ("格子柜每格只放 1 件：请改成 1", "a locker holds 1 item: use 1"),
    "plaintext_mqtt": (
        "不允许不加密的 MQTT：请改用 mqtts://，或设置 sync.allow_plaintext = true"
        "（仅限演示和测试）",
        "plaintext MQTT is refused; use mqtts:// or set sync.allow_plaintext = true "
        "(demo/tests only)",
    ),
    "ca_required": (
        "使用 mqtts:// 时必须填写（省平台的 CA 证书文件）",
        "required with mqtts://",
    ),
    "cert_key_pair": (
        "cert_file 和 key_file 必须同时填写或同时不填",
        "cert_file and key_file go together",
    ),
    "file_missing": (
        "文件不存在：请检查路径（相对路径从配置文件所在目录算起）",
        "file does not exist",
    ),
    "orientation_size": (
        "和 ui.width × ui.height = {width}x{height} 不符"
        "（高不小于宽时为 portrait，否则为 landscape）",
        "does not match ui.width x ui.height = {width}x{height}",
    ),
    "not_shorter": ("不能比 {other} 短", "must not be shorter than {other}"),
    "vmc_cabinet": (
        "vmc 协议只能驱动螺旋/履带货柜：请改成 spiral",
        "protocol vmc drives spiral/belt cabinets only: use spiral",
    ),
    "vmc_boards": (
        "vmc 协议每个串口只接一台 VMC：请改成 [0]",
        "protocol vmc has one VMC per serial port: use [0]",
    ),
    "file_unreadable": (
        "文件无法读取（{reason}）：请检查文件权限（kiosk 服务的用户要能读它）",
        "the file cannot be read ({reason}): check its permissions (the kiosk service's user "
        "must be able to read it)",
    ),
    "not_pem_key": (
        "不是 PEM 格式的公钥（{error}）：请使用省平台提供的 .pem 公钥文件",
        "not a PEM key: {error}",
    ),
    "root_key_same": (
        "和 sync.province_public_key 是同一把公钥；根公钥必须是另一把",
        "is the same key as sync.province_public_key; the root key must be separate",
    ),
    # --- field configs (kiosk.config.field_problems) ----------------------------------------
    "test_payments_field": (
        "接真实省平台（MQTT 服务器不在本机）时不允许使用 --test-payments："
        "付款必须由省平台的密钥确认",
        "--test-payments is refused with a real province (a broker not on this machine): "
        "payments must be confirmed by the province's key",
    ),
    "demo_secret_field": (
        "这是公开的演示设备密钥，接真实省平台时不允许使用：请运行 kiosk-provision register "
        "注册这台柜机，取得它自己的密钥",
        "is the published demo secret, refused with a real province: register the kiosk "
        "(kiosk-provision register) to get its own",
    ),
    # --- the device secret (kiosk.config.device_secret_problems) ----------------------------
    "secret_not_set": (
        "运行柜机（kiosk run）必须设置这一项：付款链接和离线码要用本机的设备密钥签名。"
        "请用 `kiosk-provision register` 注册这台柜机，它会写入密钥文件并设置这一项"
        "（演示或测试配置可以指向 kiosk/data/demo-device-secret）。",
        "required to run the kiosk (`kiosk run`): pay URLs and offline codes are signed with "
        "the kiosk's device secret. Register the kiosk with `kiosk-provision register`, which "
        "writes the secret file and sets this key (a demo or test config may name "
        "kiosk/data/demo-device-secret).",
    ),
    "secret_malformed": (
        "不是设备密钥：文件里必须正好是 64 个十六进制字符（0-9、小写 a-f）加一个换行，共 65 "
        "个字节（不能有空格、大写字母或 Windows 换行），和 `kiosk-provision register` 写入的一样；"
        "这个文件有 {n} 个字节。请不要手工编辑：重新运行 `kiosk-provision register`"
        "（证书还有效时加 --renew）取得新的密钥。",
        "not a device secret: the file must hold exactly 64 hex digits (0-9, lower-case a-f) "
        "and one newline, 65 bytes (no spaces, capitals or Windows line end), as "
        "`kiosk-provision register` writes it; this one has {n} bytes. Do not edit it by "
        "hand: run `kiosk-provision register` again (`--renew` while the certificate is "
        "valid) for a new one.",
    ),
}

_HEADER = re.compile(r"^\[(?P<array>\[)?\s*(?P<name>[^\[\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"^(?P<key>[A-Za-z0-9_.\"' -]+?)\s*=")


def _dotted(text: str) -> str:
    """`a . "b"` -> `a.b` (bare and quoted TOML key parts)."""
    return ".".join(part.strip().strip("\"'") for part in text.split("."))


def key_lines(text: str) -> dict[str, int]:
    """1-based line of each key (`hardware.rows`, `board[2].port`) and table header
    (`hardware`, `board[2]`) in a TOML text; keys the scan cannot place are absent."""
    lines: dict[str, int] = {}
    counts: dict[str, int] = {}
    table = ""
    in_string: str | None = None  # the closing quotes of a multi-line string being skipped
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if in_string is not None:
            if line.count(in_string) % 2 == 1:
                in_string = None
            continue
        header = _HEADER.match(line)
        if header is not None:
            name = _dotted(header["name"])
            if header["array"]:
                counts[name] = counts.get(name, 0) + 1
                name = f"{name}[{counts[name]}]"
            table = name
            lines.setdefault(table, no)
            continue
        key = _KEY.match(line)
        if key is None:
            continue
        dotted = _dotted(key["key"])
        lines.setdefault(f"{table}.{dotted}" if table else dotted, no)
        for quotes in ('"""', "'''"):
            if line.count(quotes) % 2 == 1:
                in_string = quotes
    return lines


def locate(lines: Mapping[str, int], key: str) -> int | None:
    """The line a problem about `key` points at: the key's own line, else (a key left out, or
    a default that clashes with another key) its table's header, where it goes; else None."""
    if key in lines:
        return lines[key]
    table = key.strip("[]").rpartition(".")[0] if "." in key else key.strip("[]")
    return lines.get(table)
