"""What `kiosk-provision init` says, in Chinese and English (key -> (zh, en), the same `{fields}`
in both): its prompts, its refusals and its results, chosen by kiosk.textfile.pick_lang
(`--lang`, else $KIOSK_LANG, else the locale). The config's own problems come from
kiosk.config_text."""

from __future__ import annotations

from collections.abc import Mapping

from kiosk.textfile import say_in

__all__ = ["INIT_MESSAGES", "said"]

INIT_MESSAGES: Mapping[str, tuple[str, str]] = {
    # --- prompts (Field.prompt) -------------------------------------------------------------
    "prompt_kiosk_id": ("柜号（AH-<区划代码>-<序号>）", "Kiosk id (AH-<area code>-<serial>)"),
    "prompt_site_name": ("点位名称", "Site name"),
    "prompt_site_type": ("点位类型（{allowed}）", "Site type ({allowed})"),
    "prompt_address": ("地址", "Address"),
    "prompt_gps": ("GPS 坐标（纬度,经度；不填可直接回车）", "GPS (LAT,LON, empty to skip)"),
    "prompt_cabinet": ("柜型（spiral 螺旋货道，locker 格子柜）", "Cabinet kind (spiral, locker)"),
    "prompt_boards": ("控制板地址（例如 0 或 0,1）", "Board addresses (e.g. 0 or 0,1)"),
    "prompt_rows": ("行数", "Rows"),
    "prompt_cols": ("列数", "Columns"),
    "prompt_capacity": ("每个货道的容量", "Capacity per slot"),
    "prompt_port": ("串口（设备路径或 pyserial 网址）", "Serial port (path or pyserial URL)"),
    "prompt_baud": ("波特率", "Baud rate"),
    "prompt_broker_url": (
        "省平台 MQTT 服务器地址（mqtts://主机:8883）",
        "Province broker URL (mqtts://host:8883)",
    ),
    "prompt_pay_url": ("支付链接前缀（https://...）", "Pay URL base (https://...)"),
    "prompt_ca_file": (
        "CA 证书文件（PEM；只有用 mqtt:// 时才可以不填）",
        "CA certificate file (PEM; empty only with mqtt://)",
    ),
    "prompt_province_key": (
        "省平台公钥文件（PEM；不填可直接回车）",
        "Province public key (PEM, empty to skip)",
    ),
    "prompt_province_root_key": (
        "省平台根公钥文件（PEM，用于签发密钥变更；不填则密钥固定不变）",
        "Province root key (PEM; signs key changes; empty: keys frozen)",
    ),
    "prompt_language": ("屏幕语言（zh 中文，en 英文）", "Language (zh, en)"),
    "prompt_screen": ("屏幕分辨率（宽x高）", "Screen (WIDTHxHEIGHT)"),
    "prompt_data_dir": ("数据目录", "Data directory"),
    "prompt_technician": ("技术员编号（例如 T0042）", "Technician id (e.g. T0042)"),
    "prompt_pin": ("维护密码（6–12 位数字）", "Service PIN (6-12 digits)"),
    "ask": ("{prompt}{default}：", "{prompt}{default}: "),
    "prompt_pin_again": ("请再输入一次维护密码", "Repeat the PIN"),
    "pins_differ": ("  两次输入的密码不一致，请重新输入", "  the PINs differ, try again"),
    "confirm_fingerprints": (
        "这些指纹和省平台给的清单一致吗？[y/N] ",
        "Do these fingerprints match the province's sheet? [y/N] ",
    ),
    # --- one answer checked on its own ------------------------------------------------------
    "kiosk_id": (
        "格式必须是 AH-<6 位行政区划代码>-<4 到 8 位数字或大写字母>，例如 AH-340102-0007",
        "must be AH-<6-digit GB/T 2260 area code>-<4 to 8 digits or capital letters>, e.g. "
        "AH-340102-0007",
    ),
    "area_not_anhui": (
        "区划代码 {area} 不在安徽省：{problem}",
        "area code {area} is not in Anhui: {problem}",
    ),
    "not_empty": ("不能为空", "must not be empty"),
    "one_of": ("只能是以下之一：{allowed}", "must be one of {allowed}"),
    "not_int": ("必须是整数", "must be a whole number"),
    "gps": (
        "格式必须是“纬度,经度”（十进制度数），例如 31.869,117.283",
        "must be LATITUDE,LONGITUDE in decimal degrees, e.g. 31.869,117.283",
    ),
    "boards": (
        "必须是用逗号分隔的控制板地址，例如 0 或 0,1",
        "must be board addresses separated by commas, e.g. 0 or 0,1",
    ),
    "screen": (
        "格式必须是“宽x高”（像素），例如 1080x1920",
        "must be WIDTHxHEIGHT in pixels, e.g. 1080x1920",
    ),
    "yes_no": ("只能回答 yes 或 no（也可以写 是 / 否）", "must be yes or no"),
    "cannot_read": (
        "无法读取 {file}（{reason}）：请检查路径是否正确、是否有权限",
        "cannot read {file}: {reason}",
    ),
    "not_pem_cert": (
        "{file} 不是 PEM 格式的证书：请使用省平台提供的 CA 证书文件（.pem 或 .crt）",
        "{file} is not a PEM certificate",
    ),
    "not_ed25519": (
        "{file} 不是 PEM 格式的 Ed25519 公钥：请使用省平台提供的公钥文件（.pem）",
        "{file} is not an Ed25519 public key (PEM)",
    ),
    "fingerprint": (
        "必须是 SHA-256 指纹（64 位十六进制数字，可以带冒号）",
        "must be a SHA-256 fingerprint (64 hex digits, colons allowed)",
    ),
    "pin_digits": (
        "维护密码必须是 {lo} 到 {hi} 位数字（只能用 0-9）",
        "a service PIN is {lo} to {hi} digits (0-9 only)",
    ),
    "pin_length": (
        "维护密码必须是 {lo} 到 {hi} 位数字，这里是 {n} 位",
        "a service PIN is {lo} to {hi} digits, not {n}",
    ),
    "technician": (
        "只能由 1–32 个字母、数字或 . _ - 组成（例如 T0042）",
        "must be 1-32 letters, digits, . _ or - (e.g. T0042)",
    ),
    "fingerprint_differs": (
        "和{what}的实际指纹（{fp}）不一致：请和省平台核对文件是否正确",
        "does not match the {what} ({fp})",
    ),
    "what_ca": ("CA 证书", "CA certificate"),
    "what_province_key": ("省平台公钥", "province public key"),
    "what_province_root_key": ("省平台根公钥", "province root key"),
    # --- fingerprints shown for the technician to compare ----------------------------------
    "fp_ca": ("CA 证书 SHA-256：      {fp}", "CA certificate SHA-256:      {fp}"),
    "fp_province_key": (
        "省平台公钥 SHA-256：   {fp}（密钥编号 {kid}）",
        "Province public key SHA-256: {fp} (key id {kid})",
    ),
    "fp_province_root_key": (
        "省平台根公钥 SHA-256： {fp}（密钥编号 {kid}）",
        "Province root key   SHA-256: {fp} (key id {kid})",
    ),
    # --- where an answer came from (how problems name it) ----------------------------------
    "in_answers": ("{answers} 里的 {key}", "{key} in {answers}"),
    # --- refusals ---------------------------------------------------------------------------
    "answers_unreadable": (
        "错误：无法读取答案文件 {file}：{reason}",
        "error: cannot read the answers file {file}: {reason}",
    ),
    "unknown_answer": (
        "{where}：没有这个答案项（可能是拼写错误）；可用的项：{known}",
        "{where}: unknown answer; known: {known}",
    ),
    "exists": (
        "错误：{file} 已存在：要替换它请加 --force（会先备份原文件）",
        "error: {file} exists; use --force to replace it (a backup is kept)",
    ),
    "not_written": ("错误：配置没有写入：", "error: the config was not written:"),
    "answer_problem": ("{where} = {shown}：{problem}", "{where} = {shown}: {problem}"),
    "hidden": ("（已隐藏）", "(hidden)"),
    "field_problem": ("{where}：{problem}", "{where}: {problem}"),
    "required": (
        "{flag}：必须填写（答案文件里的键名：{name}）",
        "{flag}: required (answers file key: {name})",
    ),
    "error_at": ("错误：{where}：{problem}", "error: {where}: {problem}"),
    "config_key_problem": (
        "错误：{name}：{problem}（配置项 {key}）",
        "error: {name}: {problem} (config key {key})",
    ),
    "input_ended": (
        "错误：输入已结束，还有问题没有回答：没有写入任何内容。"
        "请在终端上运行，或用参数 / --answers 文件给出全部答案（加 --non-interactive）。",
        "error: the input ended before every question was answered: nothing written. Run it "
        "on a terminal, or give every answer as flags or an --answers file "
        "(with --non-interactive).",
    ),
    "not_confirmed": ("指纹未确认：没有写入任何内容", "not confirmed: nothing written"),
    # --- results ----------------------------------------------------------------------------
    "wrote": (
        "已写入 {file}（权限 0600），柜号 {kiosk_id}",
        "wrote {file} (mode 0600) for {kiosk_id}",
    ),
    "kept": ("原配置已备份为 {file}", "previous config kept as {file}"),
    "next": (
        "下一步：运行 kiosk-provision keys，再运行 kiosk-provision register（它会提示输入注册码）",
        "next: kiosk-provision keys, then kiosk-provision register (it asks for the token)",
    ),
}


def said(key: str, /, **fields: object) -> str:
    """INIT_MESSAGES[key] in the user's language (kiosk.textfile.pick_lang)."""
    return say_in(INIT_MESSAGES, key, None, **fields)
