#pragma once
// A thin C++ face on one SQLite connection: statements prepared once and reused
// (prepare, bind, step, reset), errors as exceptions. Used by one thread at a time.

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>

namespace tongdao::chat::sqlite {

struct Error : std::runtime_error {
    Error(std::string what, int code) : std::runtime_error(std::move(what)), rc(code) {}
    int rc;
};

class Db;

/** A cached prepared statement, reset (bindings cleared) when this goes out of scope. */
class Stmt {
public:
    Stmt(Db& db, sqlite3_stmt* s) noexcept : db_(db), s_(s) {}
    ~Stmt() {
        sqlite3_reset(s_);
        sqlite3_clear_bindings(s_);
    }
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;

    Stmt& bind(int i, std::int64_t v);
    Stmt& bind(int i, std::uint64_t v) { return bind(i, static_cast<std::int64_t>(v)); }
    Stmt& bind(int i, int v) { return bind(i, static_cast<std::int64_t>(v)); }
    /** Binds text; an empty view binds NULL when `emptyIsNull`. The text must outlive the step. */
    Stmt& bind(int i, std::string_view v, bool emptyIsNull = false);
    /** One step: true when a row is ready, false when done. Throws on error. */
    bool step();
    /** Steps to the end (for writes). */
    void run() {
        while (step()) {
        }
    }

    std::int64_t integer(int col) const noexcept { return sqlite3_column_int64(s_, col); }
    std::uint64_t unsignedInt(int col) const noexcept { return static_cast<std::uint64_t>(integer(col)); }
    bool isNull(int col) const noexcept { return sqlite3_column_type(s_, col) == SQLITE_NULL; }
    std::string text(int col) const;

private:
    Db& db_;
    sqlite3_stmt* s_;
};

class Db {
public:
    /** Opens (creating) the database file; throws Error. */
    explicit Db(const std::filesystem::path& file);
    ~Db();
    Db(const Db&) = delete;
    Db& operator=(const Db&) = delete;

    /** Runs SQL without results (may hold several statements). */
    void exec(const char* sql);
    /** The statement for `sql`, prepared on first use. `sql` must be a string literal: it is the cache key. */
    Stmt prepared(const char* sql);
    /** A single integer from a query such as a PRAGMA. */
    std::int64_t queryInt(const char* sql);
    std::string queryText(const char* sql);

    [[noreturn]] void fail(int rc, const char* what) const;
    sqlite3* handle() const noexcept { return db_; }

private:
    sqlite3* db_ = nullptr;
    std::unordered_map<const char*, sqlite3_stmt*> cache_;
};

} // namespace tongdao::chat::sqlite
