"""The console's words in Chinese and English; the language comes from the ``ob_lang`` cookie,
else from the browser's ``Accept-Language``."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["LANGUAGES", "MESSAGES", "pick_language", "translator"]

LANGUAGES = ("zh", "en")
LANG_COOKIE = "ob_lang"

# key: (中文, English)
_PAIRS: dict[str, tuple[str, str]] = {
    "console": ("控制台", "Console"),
    "sign_in": ("登录", "Sign in"),
    "sign_out": ("退出登录", "Sign out"),
    "credential": ("管理员令牌或 API Key", "Administrator token or API key"),
    "credential_help": (
        "管理员令牌可管理所有业务空间；业务空间的 API Key 只能管理该空间。",
        "The administrator token manages every workspace; a workspace's API key only that workspace.",
    ),
    "signed_in_as_admin": ("管理员", "Administrator"),
    "signed_in_with_key": ("API Key", "API key"),
    "workspace": ("业务空间", "Workspace"),
    "switch": ("切换", "Switch"),
    "apps": ("应用", "Apps"),
    "knowledge": ("知识库", "Knowledge"),
    "keys": ("API Key", "API keys"),
    "language": ("语言", "Language"),
    "session_expired": ("请登录。", "Please sign in."),
    "error": ("出错了", "Something went wrong"),
    "back": ("返回", "Back"),
    # apps
    "create_app": ("新建智能体应用", "New agent app"),
    "name": ("名称", "Name"),
    "model": ("模型", "Model"),
    "create": ("创建", "Create"),
    "no_apps": ("还没有应用。", "No apps yet."),
    "app_id": ("应用 ID", "App ID"),
    "status": ("状态", "Status"),
    "published_v": ("已发布 v", "Published v"),
    "not_published": ("未发布", "Not published"),
    "draft_changed": ("草稿有未发布的修改", "Draft has unpublished changes"),
    "draft_same": ("草稿与已发布版本一致", "Draft is published"),
    "edit": ("编辑", "Edit"),
    "playground": ("调试", "Playground"),
    "instructions": ("提示词", "Instructions"),
    "instructions_help": (
        "用 {{变量名}} 引用自定义变量，API 调用时通过 biz_params.user_prompt_params 传值。",
        "Reference variables as {{name}}; calls pass values in biz_params.user_prompt_params.",
    ),
    "variables": ("自定义变量", "Variables"),
    "variable": ("变量名", "Variable"),
    "default_value": ("默认值", "Default"),
    "description": ("描述", "Description"),
    "no_variables": ("提示词中没有 {{变量}}。", "No {{variables}} in the instructions."),
    "switches": ("功能开关", "Switches"),
    "enable_thinking": ("深度思考", "Deep thinking"),
    "knowledge_enabled": ("知识库检索", "Knowledge retrieval"),
    "show_sources": ("展示回答来源", "Show sources"),
    "memory_enabled": ("长期记忆", "Long-term memory"),
    "file_parsing": ("动态文件解析", "File parsing"),
    "plugins": ("插件", "Plugins"),
    "bases_to_search": ("检索的知识库", "Knowledge bases to search"),
    "no_bases": ("本空间还没有知识库。", "No knowledge bases in this workspace."),
    "no_plugins": ("本空间还没有插件。", "No plugins in this workspace."),
    "parameters": ("生成参数", "Generation parameters"),
    "max_history_turns": ("多轮对话轮数", "History turns"),
    "save_draft": ("保存草稿", "Save draft"),
    "publish": ("发布", "Publish"),
    "saved": ("已保存。", "Saved."),
    "published": ("已发布。", "Published."),
    "rolled_back": ("已回滚。", "Rolled back."),
    "created": ("已创建。", "Created."),
    "deleted": ("已删除。", "Deleted."),
    "delete": ("删除", "Delete"),
    "confirm_delete": ("确定删除？", "Delete it?"),
    "call_snippets": ("调用示例", "Call it"),
    "snippet_help": (
        "把 DASHSCOPE_API_KEY 设为本业务空间的 API Key（在“API Key”页创建）。",
        "Set DASHSCOPE_API_KEY to an API key of this workspace (create one on the API keys page).",
    ),
    "copy": ("复制", "Copy"),
    "copied": ("已复制", "Copied"),
    "versions": ("已发布版本", "Published versions"),
    "version": ("版本", "Version"),
    "current": ("当前", "current"),
    "roll_back": ("回滚到此版本", "Roll back to this"),
    "no_versions": ("还没有发布过。", "Never published."),
    "when": ("时间", "When"),
    # playground
    "chat_with": ("对话对象", "Chat with"),
    "draft": ("草稿", "Draft"),
    "published_version": ("已发布版本", "Published version"),
    "new_session": ("新会话", "New session"),
    "send": ("发送", "Send"),
    "stop": ("停止", "Stop"),
    "prompt_placeholder": ("输入问题，Enter 发送，Shift+Enter 换行", "Ask something (Enter sends, Shift+Enter for a new line)"),
    "thoughts": ("思考过程", "Thoughts"),
    "sources": ("来源", "Sources"),
    "stopped": ("已停止", "Stopped"),
    "memory_id": ("长期记忆体", "Memory"),
    "none": ("无", "None"),
    "session": ("会话", "Session"),
    "variable_values": ("变量取值", "Variable values"),
    "session_file": ("会话文件", "Session file"),
    "file_parsing_off": (
        "此应用的草稿未开启动态文件解析：附加的文件不会被使用。",
        "File parsing is off in this app's draft: an attached file is not used.",
    ),
    # knowledge
    "create_base": ("新建知识库", "New knowledge base"),
    "kind": ("类型", "Kind"),
    "unstructured": ("文档搜索类", "Documents"),
    "structured": ("数据查询类", "Tables"),
    "no_base_yet": ("还没有知识库。", "No knowledge bases yet."),
    "documents": ("文档", "Documents"),
    "upload": ("上传文档", "Upload documents"),
    "upload_help": (
        "可一次选择多个文件：PDF、DOCX、PPTX、XLSX、MD、TXT、HTML；数据查询类为表格。",
        "Pick several files at once: PDF, DOCX, PPTX, XLSX, MD, TXT, HTML; tables for a table base.",
    ),
    "file": ("文件", "File"),
    "size": ("大小", "Size"),
    "chunks": ("切片", "Chunks"),
    "reason": ("原因", "Reason"),
    "retry": ("重试", "Retry"),
    "no_documents": ("还没有文档。", "No documents yet."),
    "retrieval_test": ("命中测试", "Retrieval test"),
    "query": ("查询", "Query"),
    "top_k": ("返回条数", "Results"),
    "search": ("检索", "Search"),
    "score": ("得分", "Score"),
    "page": ("页码", "Pages"),
    "no_hits": ("没有命中。", "Nothing found."),
    "tags": ("标签", "Tags"),
    "metadata_filter": ("元数据过滤", "Metadata filter"),
    "structured_filter": ("字段过滤", "Column filter"),
    # keys
    "create_key": ("创建 API Key", "Create API key"),
    "key_shown_once": (
        "请立即复制并妥善保存：此 Key 只显示这一次。",
        "Copy it now and keep it safe: this key is shown only once.",
    ),
    "revoke": ("撤销", "Revoke"),
    "revoked": ("已撤销", "Revoked"),
    "active": ("有效", "Active"),
    "no_keys": ("还没有 API Key。", "No API keys yet."),
    "admin_only_keys": ("只有管理员能创建或撤销 API Key。", "Only the administrator can create or revoke API keys."),
    "key": ("Key", "Key"),
    "access_keys": ("AccessKey", "AccessKeys"),
    "access_keys_help": (
        "AccessKey（ID 与 Secret）用于签名的 OpenAPI 调用（ACS3-HMAC-SHA256）。在“API Key”页创建的 Key 也带有一对 AccessKey。",
        "An AccessKey (ID and secret) signs OpenAPI calls (ACS3-HMAC-SHA256). Keys made on the API keys page carry a pair too.",
    ),
    "access_key_shown_once": (
        "请立即复制并妥善保存：AccessKey Secret 只显示这一次。",
        "Copy it now and keep it safe: the AccessKey secret is shown only once.",
    ),
    "create_access_key": ("创建 AccessKey", "Create AccessKey"),
    "no_access_keys": ("还没有 AccessKey。", "No AccessKeys yet."),
    "paired_api_key": ("配对的 API Key", "Paired API key"),
    "confirm_revoke_paired": (
        "这对 AccessKey 与一个 API Key 配对：撤销会同时撤销该 API Key。确定撤销？",
        "This AccessKey is paired with an API key: revoking it revokes that API key too. Revoke?",
    ),
    # memory
    "memory": ("长期记忆", "Memory"),
    "memory_help": (
        "记忆体保存从对话中提取的事实；调用时传 memory_id（应用需开启长期记忆）。",
        "A memory keeps facts taken from conversations; calls pass its memory_id (the app needs long-term memory on).",
    ),
    "facts": ("记忆片段", "Facts"),
    "fact": ("内容", "Fact"),
    "subject": ("主题", "Subject"),
    "source": ("来源", "Source"),
    "source_auto": ("对话提取", "From a conversation"),
    "source_manual": ("手动添加", "Added by hand"),
    "no_memories": ("还没有记忆体。", "No memories yet."),
    "no_facts": ("还没有记忆片段。", "No facts yet."),
    "create_memory": ("新建记忆体", "New memory"),
    "add_fact": ("添加记忆片段", "Add a fact"),
    "save": ("保存", "Save"),
    # plugins
    "endpoint": ("接口", "Endpoint"),
    "builtin": ("内置", "built-in"),
    "register_plugin": ("注册插件", "Register a plugin"),
    "plugin_help": (
        "插件描述（JSON）：name、description、method、url、parameters（JSON Schema）、passthrough、headers、auth。",
        "The plugin's spec as JSON: name, description, method, url, parameters (JSON Schema), passthrough, headers, auth.",
    ),
    "spec": ("插件描述", "Spec"),
    "used_by": ("关联的应用", "Used by"),
    "unused": ("没有应用使用它。", "No app uses it."),
    "test_call": ("测试调用", "Test a call"),
    "arguments": ("参数（JSON）", "Arguments (JSON)"),
    "observation": ("返回", "Result"),
    "edit_plugin": ("编辑插件", "Edit the plugin"),
    "headers": ("请求头（JSON）", "Headers (JSON)"),
    "auth": ("鉴权", "Authentication"),
    "auth_none": ("无", "None"),
    "auth_user_token": ("调用方传入的用户 token", "The caller's user token"),
    "auth_service_token": ("服务 token", "Service token"),
    "service_token": ("服务 token", "Service token"),
    "token_set": ("已设置", "set"),
    "token_not_set": ("未设置", "not set"),
    "token_unchanged": ("留空则不变", "empty: unchanged"),
    # usage
    "usage": ("用量统计", "Usage"),
    "usage_help": (
        "通过 API 调用应用的次数、失败次数与 token 数，按 UTC 日期统计（控制台调试不计入）。",
        "Calls of the apps through the API, failed calls and tokens, per UTC day (playground chats are not counted).",
    ),
    "usage_by_app": ("按应用与日期", "By app and day"),
    "calls": ("调用次数", "Calls"),
    "errors": ("失败次数", "Errors"),
    "answered": ("成功", "Answered"),
    "input_tokens": ("输入 token", "Input tokens"),
    "output_tokens": ("输出 token", "Output tokens"),
    "calls_per_day": ("每日调用次数", "Calls per day"),
    "day_utc": ("日期（UTC）", "Day (UTC)"),
    "last_days": ("近 N 天", "Last N days"),
    "no_usage": ("这段时间没有调用。", "No calls in this period."),
}

MESSAGES: dict[str, dict[str, str]] = {
    lang: {key: pair[i] for key, pair in _PAIRS.items()} for i, lang in enumerate(LANGUAGES)
}


def pick_language(cookie: str | None, accept_language: str | None) -> str:
    """The cookie's choice, else the browser's most wanted of zh/en, else English."""
    if cookie in LANGUAGES:
        return cookie
    best, best_q = "en", -1.0
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        lang = tag.strip().lower().split("-")[0]
        if lang in LANGUAGES and q > best_q:
            best, best_q = lang, q
    return best


def translator(lang: str) -> Callable[[str], str]:
    messages = MESSAGES[lang]
    return lambda key: messages.get(key, key)
