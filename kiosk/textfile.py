"""Reading the text files people edit (config TOML, planogram CSV), and saying what is wrong
with them in the user's words, in Chinese or English.

Owns: decoding (UTF-8 with or without the BOM Windows Notepad and Excel write; GBK/GB18030,
what Excel on a Chinese Windows saves a CSV as, where allowed), the error for a file that is
none of these (file, line, column, the byte, and what to do), and the choice of language for
command-line messages (`--lang`, else `$KIOSK_LANG`, else the system locale: zh_* is Chinese).

Never: guesses an encoding for a config file (TOML is UTF-8 by definition: a GBK config is
refused with a clear message, not read as mojibake).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "TextFileError",
    "os_reason",
    "pick_lang",
    "read_text",
    "say",
    "say_csv_row",
    "say_in",
    "say_os_error",
    "say_store_error",
    "say_toml_error",
    "toml_error_words",
    "use_lang",
    "worded",
]

BOM = "\ufeff"

# Command-line messages in both languages: key -> (zh, en). `{name}` fields are filled in.
_MESSAGES: Mapping[str, tuple[str, str]] = {
    "not_found": (
        "{file}：文件不存在。",
        "{file}: file not found.",
    ),
    "check_ok": ("{file}：配置无误", "{file}: OK"),
    "check_kiosk": (
        "  售货机 {kiosk_id}，点位 {site}（{site_type}，{area}）",
        "  kiosk {kiosk_id} at {site} ({site_type}, {area})",
    ),
    "check_cabinet": (
        "  货柜 {cabinet}，{rows} 行 x {cols} 列",
        "  cabinet {cabinet} {rows}x{cols}",
    ),
    "check_board": (
        "  控制板 {address}：{protocol} 协议，串口 {port}，{baud} 波特",
        "  board {address}: {protocol} on {port} @ {baud} baud",
    ),
    "check_cabinet_port": (
        "  货柜 {cabinet}，{rows} 行 x {cols} 列，串口 {port}，{baud} 波特；控制板 {boards}",
        "  cabinet {cabinet} {rows}x{cols} on {port} @ {baud} baud; boards {boards}",
    ),
    "check_broker": (
        "  省平台消息服务器 {url}（MQTT {version}）",
        "  broker {url} (MQTT {version})",
    ),
    "check_screen": (
        "  屏幕 {width}x{height}，{orientation}，界面语言 {language}",
        "  screen {width}x{height} {orientation}, language {language}",
    ),
    "check_data_dir": ("  数据目录 {dir}", "  data dir {dir}"),
    "board_no_config": (
        "{file}：没有这台售货机的配置。请用 --config 指定配置文件（可驱动任何协议的货柜），"
        "或用 --port 指定串口（仅限本项目协议的控制板）。",
        "no kiosk config at {file}: give --config (the kiosk's cabinet, any protocol) "
        "or --port (a board of our own protocol).",
    ),
    "config_not_found_hint": (
        "新机器请先运行 `kiosk-provision init` 生成配置，或用 --config 指定配置文件。",
        "On a new kiosk run `kiosk-provision init` to write one, or give --config.",
    ),
    "unreadable": (
        "{file}：无法读取（{error}）。请检查路径和文件权限。",
        "{file}: cannot be read ({error}). Check the path and the file's permissions.",
    ),
    "not_utf8": (
        "{file}：第 {line} 行第 {col} 列不是 UTF-8 文字（字节 0x{byte:02x}）。"
        "请用“UTF-8”编码另存该文件（记事本：另存为 → 编码 UTF-8）。",
        "{file}: line {line}, column {col} is not UTF-8 text (byte 0x{byte:02x}). "
        "Save the file as UTF-8 (Notepad: Save as -> Encoding UTF-8).",
    ),
    "not_text": (
        "{file}：第 {line} 行第 {col} 列既不是 UTF-8 也不是 GBK 文字（字节 0x{byte:02x}）。"
        "请在 Excel 中另存为“CSV UTF-8（逗号分隔）”。",
        "{file}: line {line}, column {col} is neither UTF-8 nor GBK text (byte 0x{byte:02x}). "
        "In Excel, save as 'CSV UTF-8 (Comma delimited)'.",
    ),
    "toml_syntax_at": (
        "第 {line} 行第 {col} 列不是有效的 TOML（{error}）。常见原因：文字值没有加英文双引号，"
        "缺少 [节名] 行，或用了中文标点。",
        "line {line}, column {col}: not valid TOML ({error}). Common causes: a text value "
        "without double quotes, a missing [section] line, or Chinese punctuation.",
    ),
    "toml_dup_key": (
        "第 {line} 行第 {col} 列不是有效的 TOML：这个键在同一节里前面已经写过（每个键只能写一次）。"
        "请删掉其中一行。",
        "line {line}, column {col}: not valid TOML: this key is already set earlier in the same "
        "section (a key may be given only once). Delete one of the two lines.",
    ),
    "toml_dup_table": (
        "第 {line} 行第 {col} 列不是有效的 TOML：节 [{table}] 出现了两次。"
        "请把两处合并成一个 [{table}]。",
        "line {line}, column {col}: not valid TOML: the section [{table}] appears twice. Merge "
        "the two into one [{table}].",
    ),
    "toml_bad_value": (
        "第 {line} 行第 {col} 列不是有效的 TOML：等号后面的值无效。文字要用英文双引号括起来"
        '（例如 "测试"，中文引号 “ ” 不行），数字不加引号，true/false 用小写。',
        "line {line}, column {col}: not valid TOML: the value after '=' is not valid. Text goes "
        'in straight double quotes ("like this"; curly quotes do not count), numbers without '
        "quotes, true/false in lower case.",
    ),
    "toml_unterminated": (
        '第 {line} 行第 {col} 列不是有效的 TOML：文字值没有结束：请在同一行末尾补上英文双引号 "。',
        "line {line}, column {col}: not valid TOML: a text value is not closed: add the "
        'closing straight double quote " on the same line.',
    ),
    "toml_expected_eq": (
        "第 {line} 行第 {col} 列不是有效的 TOML：键后面应该是等号：写成 键 = 值"
        "（用英文 =，不要用全角＝）；节名要写在方括号里，例如 [hardware]。",
        "line {line}, column {col}: not valid TOML: '=' expected after the key: write key = "
        "value (an ASCII '='); a section name goes in brackets, e.g. [hardware].",
    ),
    "toml_expected_newline": (
        "第 {line} 行第 {col} 列不是有效的 TOML：一行只能写一个 键 = 值：这一行的值后面还有别的内容"
        "（第二个值，或没加引号的文字，例如日期）。",
        "line {line}, column {col}: not valid TOML: one key = value per line: something "
        "follows the value on this line (a second value, or text without quotes such as a "
        "date).",
    ),
    "toml_table_header": (
        "第 {line} 行第 {col} 列不是有效的 TOML：节名没有结束：写成 [节名]，别漏了右方括号 ]。",
        "line {line}, column {col}: not valid TOML: a section header is not closed: write "
        "[section] with its closing ].",
    ),
    "toml_unclosed": (
        "第 {line} 行第 {col} 列不是有效的 TOML：列表 [ ... ] 或 {{ ... }} 没有结束："
        "请补上右括号。",
        "line {line}, column {col}: not valid TOML: a list [ ... ] or {{ ... }} is not closed: "
        "add the closing bracket.",
    ),
    "toml_backslash": (
        "第 {line} 行第 {col} 列不是有效的 TOML：文字值里有反斜杠 \\：路径请用 / 或写成 \\\\，"
        "或用英文单引号括起来。",
        "line {line}, column {col}: not valid TOML: a backslash \\ in a text value: write a "
        "path with / or \\\\, or put it in single quotes.",
    ),
    "config_empty": (
        "{file}：配置文件是空的（没有 [identity] 节）。"
        "新机器请运行 `kiosk-provision init` 生成配置，"
        "或用 --config 指定已有的配置文件。",
        "{file}: the config file is empty (no [identity] section). On a new kiosk run "
        "`kiosk-provision init` to write one, or give --config with an existing config.",
    ),
    "config_no_identity": (
        "{file}：没有 [identity] 节（柜机编号、点位），不是一份完整的柜机配置。"
        "请运行 `kiosk-provision init` 生成配置，或补上 [identity] 节。",
        "{file}: no [identity] section (the kiosk id and site): not a whole kiosk config. Run "
        "`kiosk-provision init` to write one, or add the [identity] section.",
    ),
    "toml_syntax": (
        "不是有效的 TOML 配置（{error}）。常见原因：文字值没有加英文双引号，"
        "缺少 [节名] 行，或用了中文标点。",
        "not valid TOML ({error}). Common causes: a text value without double quotes, a "
        "missing [section] line, or Chinese punctuation.",
    ),
    "config_problems": (
        "{file}：发现 {n} 个问题：",
        "{file}: problems found: {n}",
    ),
    "csv_rejected": (
        "{file}：已拒绝，未做任何更改：",
        "{file}: rejected, nothing applied:",
    ),
    "port_missing": (
        "串口 {port} 不存在：请检查控制板的 USB/串口线是否插好，"
        "并用 `ls /dev/ttyUSB* /dev/ttyACM* /dev/ttyAMA*` 查看实际的设备名"
        "（模拟控制板：`kiosk emulator` 是否在运行？）。",
        "serial port {port} does not exist: check the control board's USB/serial cable, and "
        "list the real device names with `ls /dev/ttyUSB* /dev/ttyACM* /dev/ttyAMA*` (for a "
        "simulated board: is `kiosk emulator` running?).",
    ),
    "port_missing_config": (
        "串口 {port} 不存在（配置文件 {file} 的 {key}）：请检查控制板的 USB/串口线是否插好，"
        "用 `ls /dev/ttyUSB* /dev/ttyACM* /dev/ttyAMA*` 查看实际的设备名，并改正配置里的 {key}"
        "（模拟控制板：`kiosk emulator` 是否在运行？）。",
        "serial port {port} does not exist ({key} in {file}): check the control board's "
        "USB/serial cable, list the real device names with `ls /dev/ttyUSB* /dev/ttyACM* "
        "/dev/ttyAMA*` and correct {key} in the config (for a simulated board: is `kiosk "
        "emulator` running?).",
    ),
    # --- the commands' own errors (kiosk, kiosk-provision) --------------------------------
    "os_error": (
        "{file}：{reason}。请检查路径是否正确、是否有权限。",
        "{file}: {reason}. Check the path and the permissions.",
    ),
    "config_unusable": (
        "错误：配置无法使用{hint}：\n{error}",
        "error: the config is not usable{hint}:\n{error}",
    ),
    "hint_init_first": (
        "（请先运行 `kiosk-provision init`）",
        " (run `kiosk-provision init` first)",
    ),
    "refused": ("REFUSED（已拒绝）：{error}", "REFUSED: {error}"),
    "no_release_key": (
        "没有发布公钥：请用 --public-key 指定，或在配置里设置 update.release_public_key。",
        "no release key: give --public-key or set update.release_public_key",
    ),
    "release_key_unset": (
        "配置里没有设置 update.release_public_key：这台柜机不会安装任何新版本。",
        "update.release_public_key is not set: this cabinet installs no release",
    ),
    "release_key_unreadable": (
        "{file}：无法读取发布公钥（{reason}）。请检查路径（--public-key，或配置里的 "
        "update.release_public_key）。",
        "{file}: the release public key cannot be read ({reason}). Check the path (--public-key, "
        "or update.release_public_key in the config).",
    ),
    "release_key_bad": (
        "{file}：不是有效的发布公钥（应为 `kiosk release keygen` 生成的 Ed25519 公钥 PEM 文件，"
        "以 -----BEGIN PUBLIC KEY----- 开头）。请换成省平台给的发布公钥文件，不要用私钥或证书。",
        "{file}: not a valid release public key (expected the Ed25519 public key PEM file "
        "`kiosk release keygen` writes, starting -----BEGIN PUBLIC KEY-----). Use the release "
        "public key file from the province, not a private key or a certificate.",
    ),
    "release_missing": (
        "{dir}：不是发布包目录：缺少 {name}。请给出解压后的发布包目录。",
        "{dir}: not a release: {name} is missing. Give the unpacked release directory.",
    ),
    "release_unreadable": (
        "{dir}：发布包的清单或签名已损坏、无法读取。请重新下载或复制这个发布包。",
        "{dir}: the release's manifest or signature is damaged and cannot be read. Download or "
        "copy the release again.",
    ),
    "release_other_key": (
        "{dir}：这个发布包由发布密钥 {signed} 签名，本柜机只信任 {trusted}"
        "（update.release_public_key）。请确认发布包来源，或改用正确的公钥。",
        "{dir}: signed by release key {signed}; this cabinet trusts {trusted} "
        "(update.release_public_key). Check where the release came from, or use the right key.",
    ),
    "release_bad_signature": (
        "{file}：签名不符（清单被改过，或公钥不对）。请重新下载发布包，不要安装它。",
        "{file}: the signature does not match (an altered manifest or a wrong key). Download the "
        "release again; do not install this one.",
    ),
    "release_file_missing": (
        "{file}：清单里有这个文件，但它不存在。请重新复制完整的发布包。",
        "{file}: listed in the manifest but missing. Copy the whole release again.",
    ),
    "release_file_altered": (
        "{file}：大小或 SHA-256 与清单不符（文件被改过或没复制完整）。请重新复制发布包。",
        "{file}: size or SHA-256 does not match the manifest (altered or copied only in part). "
        "Copy the release again.",
    ),
    "release_extra_files": (
        "{dir}：有清单里没有的文件：{files}。请用原样的发布包，不要往里面加文件。",
        "{dir}: files not in the manifest: {files}. Use the release as it was built; add no "
        "files to it.",
    ),
    "update_state_bad": (
        "{file}：更新状态文件已损坏，无法读取。请先把它改名保存（例如加 .bad），再运行 "
        "`kiosk update status` 查看，并把损坏的文件交给维护人员。",
        "{file}: the update state file is damaged and cannot be read. Rename it (e.g. add .bad) "
        "to keep it, run `kiosk update status`, and hand the damaged file to support.",
    ),
    "release_key_exists": (
        "{file} 已存在：发布密钥只生成一次。",
        "{file} exists; a release key is made once",
    ),
    "release_build_failed": ("kiosk release build 失败：{error}", "kiosk release build: {error}"),
    "run_script_headless": (
        "kiosk run：--script 必须和 --headless 一起用。",
        "kiosk run: --script needs --headless",
    ),
    "run_pay_via": (
        "kiosk run：--pay-via-province 需要 --script，并且不能和 --test-payments 一起用。",
        "kiosk run: --pay-via-province needs --script and excludes --test-payments",
    ),
    "run_script_cmd": (
        "kiosk run：--script 和 --test-payments 只能通过 `kiosk` 命令使用。",
        "kiosk run: --script and --test-payments need the `kiosk` command",
    ),
    "test_payments": (
        "测试支付：付款确认由临时生成的本地密钥签名，不是省平台。",
        "TEST PAYMENTS: confirmations are signed by a throwaway local key",
    ),
    "no_catalog": (
        "存储里还没有商品目录（可先运行 kiosk store seed-demo，或加 --demo）。",
        "the store holds no catalog yet (try: kiosk store seed-demo, or --demo)",
    ),
    "planogram_applied": (
        "货道表第 {version} 版已生效：{n} 个货道",
        "planogram version {version} applied: {n} slots",
    ),
    "store_corrupt": (
        "柜机数据库已损坏，已被移到一边（{moved}）。柜机暂停营业：请先把这些文件拷贝保存，"
        "再运行 `kiosk store recover`（见技术员手册 STORE_CORRUPT 一行）。",
        "the kiosk's database is corrupt and was moved aside ({moved}). The kiosk is out of "
        "service: save those files, then run `kiosk store recover` (technician guide: "
        "STORE_CORRUPT).",
    ),
    "store_unusable": (
        "柜机数据库无法使用：{error}。请检查配置里的 store.data_dir，或运行 `kiosk store check`。",
        "the kiosk's database cannot be used: {error}. Check store.data_dir in the config, or "
        "run `kiosk store check`.",
    ),
    "selftest_queued": ("已排队发送给省平台（事件 {id}）", "queued for the province as event {id}"),
    "selftest_not_queued": (
        "没有排队发送给省平台：{error}",
        "not queued for the province: {error}",
    ),
    "csv_rejected_why": (
        "{file}：已拒绝，未做任何更改：{error}",
        "{file}: rejected, nothing applied: {error}",
    ),
    "seed_disk_full": (
        "kiosk store seed-demo：{dir} 所在磁盘已满（剩余 {free} MB）：{error}\n"
        "请腾出空间后再运行一次；重复运行是安全的（每一部分要么全部完成，要么什么都不做）。",
        "kiosk store seed-demo: the disk is full in {dir} ({free} MB free): {error}\n"
        "Free some space (or fix the directory) and run it again; it is safe to repeat "
        "(each part is all or nothing).",
    ),
    "seed_unwritable": (
        "kiosk store seed-demo：无法写入 {dir} 中的存储（剩余 {free} MB）：{error}\n"
        "请修好该目录（权限、磁盘）后再运行一次；重复运行是安全的（每一部分要么全部完成，"
        "要么什么都不做）。",
        "kiosk store seed-demo: the store cannot be written in {dir} ({free} MB free): {error}\n"
        "Free some space (or fix the directory) and run it again; it is safe to repeat "
        "(each part is all or nothing).",
    ),
    "recover_failed": ("kiosk store recover 失败：{error}", "kiosk store recover: {error}"),
    "emulator_ctl_failed": (
        "kiosk emulator ctl：{file}：{reason}",
        "kiosk emulator ctl: {file}: {reason}",
    ),
    "key_exists": (
        "错误：{file} 已存在，这台柜机已经有私钥。要换新私钥请加 --force（之后必须重新注册）。",
        "error: {file} exists; the kiosk already has a key. Use --force to make a new one (the "
        "kiosk must then register again).",
    ),
    "no_device_key": (
        "错误：{file} 处没有设备私钥：请先运行 `kiosk-provision keys`。",
        "error: no device key at {file}: run `kiosk-provision keys` first",
    ),
    "nothing_to_renew": (
        "错误：还没有证书，无法续期：请先用注册码注册。",
        "error: nothing to renew (no certificate yet): register with a token first",
    ),
    "no_pinned_ca": (
        "错误：没有固定注册用的 CA：初始化时请给出省平台的 CA"
        "（kiosk-provision init --ca-file，或 sync.client_ca_fingerprint）。",
        "error: no registration CA pinned: give the province's CA at provisioning "
        "(kiosk-provision init --ca-file, or sync.client_ca_fingerprint)",
    ),
    "error": ("错误：{error}", "error: {error}"),
    "registration_failed": ("错误：注册失败：{error}", "error: registration failed: {error}"),
    "unit_unwritable": (
        "错误：无法写入 {file}：请用 sudo 运行，或用 --dest 指定目录。",
        "error: cannot write {file}: run with sudo, or use --dest DIR",
    ),
    "bad_technician_id": (
        "错误：--id {id}：技术员编号须为 1–32 个字母、数字或 . _ -（例如 T0042）。",
        "error: --id {id}: must be 1-32 letters, digits, . _ or - (e.g. T0042)",
    ),
    "pin_file_error": ("错误：--pin-file：{error}", "error: --pin-file: {error}"),
    "no_usable_pin": ("错误：没有得到可用的维护密码。", "error: no usable PIN given"),
    "pin_no_terminal": (
        "错误：没有终端可以提问：请用 --pin-file 文件 或环境变量 ${env} 给出维护密码。",
        "error: give the PIN with --pin-file FILE or ${env} (no terminal to ask on)",
    ),
    "pin_problem": ("错误：{where}：{problem}", "error: {where}: {problem}"),
    "pin_file_unreadable": (
        "无法读取维护密码文件 {file}：{reason}",
        "cannot read the PIN file {file}: {reason}",
    ),
    "token_file_unreadable": (
        "无法读取注册码文件 {file}：{reason}",
        "cannot read the token file {file}: {reason}",
    ),
    "not_utf8_short": ("不是 UTF-8 文字", "not UTF-8 text"),
    # planogram CSV rows (kiosk.core.planogram.CsvRowError keys)
    "csv_row": ("第 {row} 行：{message}", "row {row}: {message}"),
    "csv_header": (
        "第一行必须写出这些列名：{columns}（顺序不限；其他列如 product_name 或备注会被忽略）。"
        "缺少的列：{missing}；重复的列：{twice}",
        "header must name the columns {columns} (any order; other columns such as "
        "product_name or notes are ignored): missing {missing}; twice {twice}",
    ),
    "csv_more_cells": ("格子比列名多（共 {n} 列）", "more cells than header columns ({n})"),
    "csv_fewer_cells": ("格子比列名少（共 {n} 列）", "fewer cells than header columns ({n})"),
    "csv_int": ("{name} 必须是整数，这里是 {got}", "{name} must be a whole number, got {got}"),
    "csv_range": (
        "{name} 必须在 {lo} 到 {hi} 之间，这里是 {got}",
        "{name} must be {lo}..{hi}, got {got}",
    ),
    "csv_locker_capacity": (
        "格子柜门只能放 1 件，这里容量写的是 {got}",
        "a locker door holds exactly 1 item, capacity {got} given",
    ),
    "csv_kind": (
        "kind 只能是 spiral 或 locker，这里是 {got}",
        "kind must be spiral or locker, got {got}",
    ),
    "csv_unknown_product": (
        "商品编号 {product} 不在商品目录里",
        "product_id {product} is not in the catalog",
    ),
    "csv_slot_twice": (
        "{slot} 号货道在第 {at} 行已经写过",
        "slot {slot} already defined on row {at}",
    ),
    "csv_hw_twice": (
        "{board} 号控制板的地址 {address} 在第 {at} 行已经用过",
        "board {board} address {address} already used on row {at}",
    ),
    "csv_no_slots": ("文件里没有任何货道", "the file has no slots"),
    "board_unreachable": (
        "连不上 {where} 上的控制板：{reason}",
        "cannot reach the board at {where}: {reason}",
    ),
    "board_tx_unknown": (
        "tx={tx} 可能执行了，也可能没有：请查看取货口（我们自己协议的控制板："
        "`kiosk board outcome --tx {tx}` 可以查询）",
        "tx={tx} may or may not have run: check the pickup port (a board of our own "
        "protocol: `kiosk board outcome --tx {tx}` asks it)",
    ),
    "board_check": (
        "请检查：连接线和控制板电源；波特率（--baud，现在是 {baud}）是否与控制板一致；"
        "控制板地址（--address，现在是 {address}）；有没有别的程序占着串口（先停 kiosk 服务）；"
        "模拟控制板：`kiosk emulator` 是否在运行？",
        "check: the cable and the board's power; the baud rate (--baud, now {baud}) matches "
        "the board; the board address (--address, now {address}); nothing else holds the port "
        "(stop the kiosk service first); for a simulated board: is `kiosk emulator` running?",
    ),
    "config_port": ("kiosk 配置里的串口", "the kiosk config's port"),
    "board_check_config": (
        "请检查：连接线和控制板电源；kiosk 配置里的串口和波特率（[hardware]，锁控板在 [modbus]）；"
        "有没有别的程序占着串口（先停 kiosk 服务）；模拟控制板：`kiosk emulator` 是否在运行？",
        "check: the cable and the board's power; the port and baud rate in the kiosk config "
        "([hardware], or [modbus] for lock boards); nothing else holds the port (stop the kiosk "
        "service first); for a simulated board: is `kiosk emulator` running?",
    ),
    "config_unchanged": ("错误：配置没有改动：", "error: the config was not changed:"),
}


def pick_lang(flag: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """ "zh" or "en": the flag, else $KIOSK_LANG, else the locale ($LC_ALL, $LC_MESSAGES,
    $LANG; zh_* is Chinese), else English."""
    env = os.environ if environ is None else environ
    for value in (flag, env.get("KIOSK_LANG")):
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(var)
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    return "en"


def use_lang(flag: str | None) -> None:
    """A command's `--lang` flag: its messages (and those of what it runs) in that language,
    by setting $KIOSK_LANG for `pick_lang` (nothing when the flag is not given)."""
    if flag:
        os.environ["KIOSK_LANG"] = flag


def say(key: str, lang: str | None = None, /, **fields: object) -> str:
    """The message `key` in `lang` (default: `pick_lang()`), fields filled in."""
    return say_in(_MESSAGES, key, lang, **fields)


def say_in(
    table: Mapping[str, tuple[str, str]], key: str, lang: str | None = None, /, **fields: object
) -> str:
    """`say` for another module's table of the same shape (key -> (zh, en)): the config's
    problems (kiosk.config_text), `kiosk-provision init` (provisioning.init_text)."""
    zh, en = table[key]
    return (zh if (lang or pick_lang()) == "zh" else en).format(**fields)


_TOML_AT = re.compile(r"^(?P<error>.*) \(at line (?P<line>\d+), column (?P<col>\d+)\)$", re.S)
_TOML_END = re.compile(r"^(?P<error>.*) \(at end of document\)$", re.S)
# tomllib's common errors -> our own sentence (its hint fits that kind only)
_TOML_KINDS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^Cannot overwrite a value"), "toml_dup_key"),
    (re.compile(r"^Cannot declare \((?P<table>.*?),?\) twice"), "toml_dup_table"),
    (re.compile(r"^Invalid value"), "toml_bad_value"),
    (re.compile(r"^(Illegal character '\\n'|Unterminated string)"), "toml_unterminated"),
    (re.compile(r"^Expected '=' after a key"), "toml_expected_eq"),
    (re.compile(r"^Expected newline or end of document"), "toml_expected_newline"),
    (
        re.compile(r"^Expected '\]\]?' at the end of (a|an array) table declaration"),
        "toml_table_header",
    ),
    (re.compile(r"^Unclosed (array|inline table)"), "toml_unclosed"),
    (re.compile(r"^Unescaped '\\' in a string"), "toml_backslash"),
)


def toml_error_words(e: Exception, text: str | None = None) -> tuple[str, dict[str, object]]:
    """The message key and fields for a tomllib.TOMLDecodeError: its line and column to be
    said in the user's language; a common kind of error (a key given twice, a value without
    quotes, ...) in our own words with the hint that fits it, any other with the parser's own
    words (English) kept in brackets. `text`: the document, for an error at its end."""
    m = _TOML_AT.match(str(e))
    if m is not None:
        error, line, col = m["error"], int(m["line"]), int(m["col"])
    elif (end := _TOML_END.match(str(e))) is not None and text is not None:
        error = end["error"]
        line = text.count("\n") + (0 if text.endswith("\n") else 1)
        col = len(text.rstrip("\n").rsplit("\n", 1)[-1]) + 1
    else:
        return "toml_syntax", {"error": e}
    where: dict[str, object] = {"line": line, "col": col}
    for pattern, key in _TOML_KINDS:
        kind = pattern.match(error)
        if kind is None:
            continue
        if key == "toml_dup_table":
            parts = re.findall(r"'((?:[^'\\]|\\.)*)'", kind["table"])
            return key, {**where, "table": ".".join(parts) or kind["table"]}
        return key, where
    return "toml_syntax_at", {**where, "error": error}


def say_toml_error(e: Exception, lang: str | None = None) -> str:
    """A tomllib.TOMLDecodeError in the user's language, with the usual causes."""
    key, fields = toml_error_words(e)
    return say(key, lang, **fields)


_OS_REASONS: Mapping[int, tuple[str, str]] = {
    errno.ENOENT: ("文件或目录不存在", "no such file or directory"),
    errno.EACCES: ("没有权限", "permission denied"),
    errno.EPERM: ("不允许这样操作", "operation not permitted"),
    errno.ENOSPC: ("磁盘已满", "no space left on the disk"),
    errno.EISDIR: ("这是一个目录，不是文件", "is a directory, not a file"),
    errno.ENOTDIR: ("路径中有一段不是目录", "a part of the path is not a directory"),
    errno.EROFS: ("文件系统是只读的", "read-only file system"),
    errno.EEXIST: ("已经存在", "already exists"),
    errno.EBUSY: ("设备正忙（被别的程序占用）", "device or resource busy"),
    errno.ENODEV: ("没有这个设备", "no such device"),
    errno.ENXIO: ("没有这个设备或地址", "no such device or address"),
    errno.EIO: ("输入/输出错误（设备被拔出？）", "input/output error (device unplugged?)"),
    errno.ECONNREFUSED: ("连接被拒绝", "connection refused"),
    errno.ETIMEDOUT: ("连接超时", "connection timed out"),
}


def os_reason(e: OSError, lang: str | None = None) -> str:
    """Why an OS call failed, in the user's language (the errno's own words otherwise)."""
    pair = _OS_REASONS.get(e.errno or 0)
    if pair is None:
        return str(e.strerror or e)
    return pair[0] if (lang or pick_lang()) == "zh" else pair[1]


def worded(fields: Mapping[str, object], lang: str | None = None) -> dict[str, object]:
    """`fields` with each OSError in them as its reason in `lang` (`os_reason`): a message
    kept as data (TextFileError, kiosk.config.Problem) says the OS's words in the user's."""
    return {k: os_reason(v, lang) if isinstance(v, OSError) else v for k, v in fields.items()}


def say_os_error(e: OSError, lang: str | None = None) -> str:
    """An OSError as `os_error`: the file it names and why, in the user's language."""
    name = e.filename if e.filename is not None else "?"
    return say("os_error", lang, file=name, reason=os_reason(e, lang))


_MOVED_TO = re.compile(r"^moved_to: (?P<path>.+)$", re.M)


def say_store_error(e: Exception, lang: str | None = None) -> str:
    """A store that cannot be opened (kiosk.store.StoreError, sqlite3.Error) in the user's
    language: a corrupt one (its STORE_CORRUPT report) names where its files went."""
    report = getattr(e, "report", None)
    if isinstance(report, str):
        m = _MOVED_TO.search(report)
        return say("store_corrupt", lang, moved=m["path"].strip() if m else "?")
    return say("store_unusable", lang, error=e)


def say_csv_row(row: int, message: str, key: str, params: Iterable[tuple[str, object]]) -> str:
    """One rejected planogram CSV row (kiosk.core.planogram.CsvRowError) in the user's
    language: in English the row's own message, in Chinese its key worded (a row error
    without a key keeps its English message)."""
    lang = pick_lang()
    zh = lang == "zh" and key in _MESSAGES
    text = say(key, lang, **dict(params)) if zh else message
    return say("csv_row", lang, row=row, message=text)


@dataclass
class TextFileError(Exception):
    """A file that cannot be read as text. `key` is a message key; `fields` fill it in."""

    key: str
    fields: dict[str, object]

    def message(self, lang: str | None = None) -> str:
        return say(self.key, lang, **worded(self.fields, lang))

    def __str__(self) -> str:
        return self.message("en")


def _position(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters of the decodable prefix) of byte `offset`."""
    line = data.count(b"\n", 0, offset) + 1
    start = data.rfind(b"\n", 0, offset) + 1
    col = len(data[start:offset].decode("utf-8", errors="replace")) + 1
    return line, col


def decode_text(data: bytes, name: str, *, allow_gbk: bool = False) -> str:
    """`data` as text: UTF-8 (a leading BOM dropped), or with `allow_gbk` GB18030 (GBK's
    superset) when it is not UTF-8. Raises TextFileError saying where and what to do."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        if allow_gbk:
            try:
                return data.decode("gb18030")
            except UnicodeDecodeError:
                pass
        line, col = _position(data, e.start)
        key = "not_text" if allow_gbk else "not_utf8"
        fields: dict[str, object] = {"file": name, "line": line, "col": col, "byte": data[e.start]}
        raise TextFileError(key, fields) from None
    return text[1:] if text.startswith(BOM) else text


def read_text(path: Path, *, allow_gbk: bool = False) -> str:
    """Read and decode a file a person edits (see `decode_text`)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TextFileError("not_found", {"file": str(path)}) from None
    except OSError as e:
        raise TextFileError("unreadable", {"file": str(path), "error": e}) from None
    return decode_text(data, str(path), allow_gbk=allow_gbk)
