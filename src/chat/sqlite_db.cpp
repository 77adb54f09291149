#include "sqlite_db.hpp"

namespace tongdao::chat::sqlite {

Stmt& Stmt::bind(int i, std::int64_t v) {
    if (const int rc = sqlite3_bind_int64(s_, i, v); rc != SQLITE_OK) db_.fail(rc, "bind");
    return *this;
}

Stmt& Stmt::bind(int i, std::string_view v, bool emptyIsNull) {
    const int rc = (emptyIsNull && v.empty())
                       ? sqlite3_bind_null(s_, i)
                       : sqlite3_bind_text64(s_, i, v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8);
    if (rc != SQLITE_OK) db_.fail(rc, "bind");
    return *this;
}

bool Stmt::step() {
    const int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    db_.fail(rc, sqlite3_sql(s_));
}

std::string Stmt::text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
    if (!p) return {};
    return std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s_, col)));
}

Db::Db(const std::filesystem::path& file) {
    const int rc = sqlite3_open_v2(file.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                   nullptr);
    if (rc != SQLITE_OK) {
        std::string msg = "cannot open " + file.string() + ": " + (db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc));
        sqlite3_close(db_);
        db_ = nullptr;
        throw Error(msg, rc);
    }
    sqlite3_extended_result_codes(db_, 1);
    // Readers and the writer are on separate connections; a reader may wait for a checkpoint.
    sqlite3_busy_timeout(db_, 5000);
}

Db::~Db() {
    for (auto& [sql, s] : cache_) sqlite3_finalize(s);
    sqlite3_close(db_);
}

void Db::exec(const char* sql) {
    char* err = nullptr;
    const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
        std::string msg = std::string(sql).substr(0, 60) + ": " + (err ? err : sqlite3_errstr(rc));
        sqlite3_free(err);
        throw Error(msg, rc);
    }
}

Stmt Db::prepared(const char* sql) {
    auto& s = cache_[sql];
    if (!s) {
        if (const int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr); rc != SQLITE_OK) {
            s = nullptr;
            cache_.erase(sql);
            fail(rc, sql);
        }
    }
    return Stmt(*this, s);
}

std::int64_t Db::queryInt(const char* sql) {
    auto st = prepared(sql);
    return st.step() ? st.integer(0) : 0;
}

std::string Db::queryText(const char* sql) {
    auto st = prepared(sql);
    return st.step() ? st.text(0) : std::string{};
}

void Db::fail(int rc, const char* what) const {
    throw Error(std::string(what ? what : "sqlite") + ": " + sqlite3_errmsg(db_), rc);
}

} // namespace tongdao::chat::sqlite
