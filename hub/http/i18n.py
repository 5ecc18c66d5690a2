"""Console labels: Vietnamese first, English available (``?lang=en``, remembered in a cookie)."""

from __future__ import annotations

from collections.abc import Callable

LANGS = ("vi", "en")

LABELS: dict[str, dict[str, str]] = {
    "title": {"vi": "Trục liên thông văn bản", "en": "Document exchange hub"},
    "login": {"vi": "Đăng nhập", "en": "Log in"},
    "logout": {"vi": "Đăng xuất", "en": "Log out"},
    "token": {
        "vi": "Mã truy cập (quản trị viên hoặc kiểm toán viên)",
        "en": "Access token (administrator or auditor)",
    },
    "dashboard": {"vi": "Tổng quan", "en": "Dashboard"},
    "log": {"vi": "Nhật ký văn bản", "en": "Message log"},
    "directory": {"vi": "Danh bạ cơ quan", "en": "Directory"},
    "ledger": {"vi": "Sổ cái", "en": "Ledger"},
    "throughput": {"vi": "Văn bản tiếp nhận", "en": "Packages accepted"},
    "last_hour": {"vi": "1 giờ qua", "en": "last hour"},
    "last_day": {"vi": "24 giờ qua", "en": "last 24 hours"},
    "refused": {"vi": "Bị từ chối (24 giờ)", "en": "Refused (24 hours)"},
    "pending": {"vi": "Đang chờ chuyển", "en": "Pending deliveries"},
    "oldest_pending": {"vi": "Chờ lâu nhất", "en": "Oldest pending"},
    "dead": {"vi": "Chuyển thất bại", "en": "Dead deliveries"},
    "overdue": {
        "vi": "Quá hạn xác nhận (NĐ 30/2020, trong ngày)",
        "en": "Overdue acknowledgements (Decree 30/2020, same day)",
    },
    "overdue_only": {
        "vi": "Chưa xác nhận quá hạn (hết ngày làm việc)",
        "en": "Unacknowledged after the working day",
    },
    "dead_letters": {"vi": "Thư chết (hàng đợi)", "en": "Dead letters (broker)"},
    "outbox": {"vi": "Chờ phát hành", "en": "Outbox"},
    "search": {"vi": "Tìm kiếm", "en": "Search"},
    "sender": {"vi": "Nơi gửi", "en": "Sender"},
    "recipient": {"vi": "Nơi nhận", "en": "Recipient"},
    "document_id": {"vi": "Mã văn bản", "en": "DocumentId"},
    "code": {"vi": "Số, ký hiệu", "en": "Code"},
    "subject": {"vi": "Trích yếu", "en": "Subject"},
    "kind": {"vi": "Loại gói", "en": "Kind"},
    "business_type": {"vi": "Loại nghiệp vụ", "en": "Business type"},
    "state": {"vi": "Trạng thái chuyển", "en": "Delivery state"},
    "business_status": {"vi": "Trạng thái xử lý", "en": "Business status"},
    "signature": {"vi": "Chữ ký số", "en": "Signature"},
    "from": {"vi": "Từ ngày", "en": "From"},
    "to": {"vi": "Đến ngày", "en": "To"},
    "received": {"vi": "Thời điểm nhận", "en": "Received"},
    "package": {"vi": "Gói tin", "en": "Package"},
    "deliveries": {"vi": "Chuyển phát", "en": "Deliveries"},
    "events": {"vi": "Sự kiện sổ cái", "en": "Ledger events"},
    "resend": {"vi": "Gửi lại", "en": "Resend"},
    "next_page": {"vi": "Trang sau", "en": "Next page"},
    "export": {"vi": "Xuất", "en": "Export"},
    "no_results": {"vi": "Không có kết quả", "en": "No results"},
    "legal_hold": {"vi": "Phong tỏa pháp lý", "en": "Legal hold"},
    "place_hold": {"vi": "Phong tỏa", "en": "Place hold"},
    "lift_hold": {"vi": "Gỡ phong tỏa", "en": "Lift hold"},
    "reason": {"vi": "Lý do", "en": "Reason"},
    "system_state": {"vi": "Trạng thái", "en": "State"},
    "active": {"vi": "Đang hoạt động", "en": "Active"},
    "suspended": {"vi": "Tạm ngừng", "en": "Suspended"},
    "suspend": {"vi": "Tạm ngừng kết nối", "en": "Suspend"},
    "resume": {"vi": "Cho kết nối lại", "en": "Resume"},
    "tokens_until": {"vi": "Token hết hạn", "en": "Tokens valid until"},
    "no_end": {"vi": "Không hết hạn", "en": "No end"},
    "expired": {"vi": "Đã hết hạn", "en": "Expired"},
    "evidence": {"vi": "Tải hồ sơ chứng cứ", "en": "Download evidence bundle"},
    "purged": {"vi": "Đã xóa nội dung (lưu trữ)", "en": "Bytes purged (retention)"},
    "checkpoint": {"vi": "Điểm niêm phong mới nhất", "en": "Latest checkpoint"},
    "size": {"vi": "Số lá", "en": "Tree size"},
    "root": {"vi": "Gốc Merkle", "en": "Root hash"},
    "time": {"vi": "Thời điểm", "en": "Time"},
    "key": {"vi": "Khóa ký", "en": "Signing key"},
    "verify": {"vi": "Kiểm tra toàn bộ sổ cái", "en": "Verify the whole ledger"},
    "verification": {"vi": "Kết quả kiểm tra", "en": "Verification"},
    "organs": {"vi": "Cơ quan", "en": "Organs"},
    "systems": {"vi": "Hệ thống kết nối", "en": "Connected systems"},
    "name": {"vi": "Tên", "en": "Name"},
    "location": {"vi": "Vị trí", "en": "Location"},
    "role": {"vi": "Vai trò", "en": "Role"},
    "signed_in_as": {"vi": "Đăng nhập với", "en": "Signed in as"},
    "actions": {"vi": "Thao tác", "en": "Actions"},
    "unsealed": {"vi": "Sự kiện chưa niêm phong", "en": "Events not yet sealed"},
}


def translator(lang: str) -> Callable[[str], str]:
    """``t(key)`` for templates; unknown keys show themselves (never a blank)."""
    lang = lang if lang in LANGS else "vi"

    def t(key: str) -> str:
        return LABELS.get(key, {}).get(lang, key)

    return t
