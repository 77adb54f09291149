// sqlite_batch: SQLite's own batched insert rate, the yardstick of chat_compare.py --mode saturation.
//
// Inserts rows of tongdao-server's own schema (src/chat/sqlite_store.cpp: events(room, seq, ts,
// kind, state, target, user, name, cid, body) WITHOUT ROWID, keyed (room, seq), with the unique
// (user, cid) and the ts indexes; rooms(id, name, epoch, seq)) into a fresh WAL database with the
// given synchronous setting, in transactions of --batch rows, each ending as the server's batches
// do with one UPDATE of rooms.seq per room touched. One prepared statement, one thread: the plain
// fast use of the SQLite C API, with nothing of a server around it. Rows come from --senders
// users posting in turn to --rooms rooms (sender i to room i % rooms), with a body of
// --body-size bytes of JSON, as `tongdao bench --chat` sends them.
//
//   sqlite_batch --db PATH [--rows 200000] [--batch 100] [--synchronous full|normal] [--body-size 100]
//                [--rooms 100] [--senders 1000] [--seconds 10]
//
// Stops after --rows rows or --seconds, whichever comes first, and prints one JSON line:
// {"rows":N,"seconds":S,"rows_per_sec":R,"transactions":T,"batch":B,"synchronous":"full",...}

#include <sqlite3.h>
#include <time.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

[[noreturn]] void die(const char* what, sqlite3* db) {
    std::fprintf(stderr, "sqlite_batch: %s: %s\n", what, db ? sqlite3_errmsg(db) : "");
    std::exit(1);
}

double now() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

void exec(sqlite3* db, const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
        std::fprintf(stderr, "sqlite_batch: %s: %s\n", sql, err ? err : "?");
        std::exit(1);
    }
}

std::size_t number(const char* s) {
    char* end = nullptr;
    const double v = std::strtod(s, &end);
    if (end == s || *end != '\0' || !(v >= 0) || v > 1e12) {
        std::fprintf(stderr, "sqlite_batch: bad number %s\n", s);
        std::exit(2);
    }
    return static_cast<std::size_t>(v);
}

}  // namespace

int main(int argc, char** argv) {
    std::string path, sync = "full";
    std::size_t rows = 200000, batch = 100, bodySize = 100, rooms = 100, senders = 1000, seconds = 10;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (i + 1 >= argc) {
            std::fprintf(stderr, "sqlite_batch: %s needs a value\n", argv[i]);
            return 2;
        }
        const char* v = argv[++i];
        if (a == "--db") path = v;
        else if (a == "--rows") rows = number(v);
        else if (a == "--batch") batch = number(v);
        else if (a == "--synchronous") sync = v;
        else if (a == "--body-size") bodySize = number(v);
        else if (a == "--rooms") rooms = number(v);
        else if (a == "--senders") senders = number(v);
        else if (a == "--seconds") seconds = number(v);
        else {
            std::fprintf(stderr, "sqlite_batch: unknown option %s (see the comment at the top of bench/chat/sqlite_batch.cpp)\n", argv[i - 1]);
            return 2;
        }
    }
    if (path.empty() || batch == 0 || rooms == 0 || senders == 0 || (sync != "full" && sync != "normal")) {
        std::fprintf(stderr, "usage: sqlite_batch --db PATH [--rows N] [--batch B] [--synchronous full|normal] [--body-size N] [--rooms N] [--seconds S]\n");
        return 2;
    }
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK)
        die("open", db);
    exec(db, "PRAGMA journal_mode=WAL");
    exec(db, sync == "full" ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    // The schema of tongdao-server's store (src/chat/sqlite_store.cpp, version 1).
    exec(db,
         "CREATE TABLE IF NOT EXISTS rooms(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, epoch TEXT NOT NULL,"
         " seq INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL);"
         "CREATE TABLE IF NOT EXISTS events(room INTEGER NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL,"
         " kind INTEGER NOT NULL, state INTEGER NOT NULL DEFAULT 0, target INTEGER, user TEXT NOT NULL, name TEXT NOT NULL,"
         " cid TEXT, body TEXT NOT NULL, PRIMARY KEY(room, seq)) WITHOUT ROWID;"
         "CREATE UNIQUE INDEX IF NOT EXISTS events_cid ON events(user, cid) WHERE cid IS NOT NULL;"
         "CREATE INDEX IF NOT EXISTS events_ts ON events(ts);"
         "CREATE TABLE IF NOT EXISTS members(user TEXT NOT NULL, room INTEGER NOT NULL, read_seq INTEGER NOT NULL,"
         " PRIMARY KEY(user, room)) WITHOUT ROWID;");
    exec(db, "BEGIN");
    for (std::size_t r = 0; r < rooms; ++r) {
        const std::string sql = "INSERT OR IGNORE INTO rooms(id, name, epoch, seq, created) VALUES(" + std::to_string(r + 1) +
                                ", 'bench-r" + std::to_string(r) + "', '0123456789abcdef', 0, 1764590400000)";
        exec(db, sql.c_str());
    }
    exec(db, "COMMIT");
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v3(db,
                           "INSERT INTO events(room, seq, ts, kind, state, target, user, name, cid, body) VALUES(?, ?, ?, 0, 0, NULL, ?, ?, ?, ?)",
                           -1, SQLITE_PREPARE_PERSISTENT, &st, nullptr) != SQLITE_OK)
        die("prepare", db);
    // As the server does at the end of each batch: each room's latest seq.
    sqlite3_stmt* up = nullptr;
    if (sqlite3_prepare_v3(db, "UPDATE rooms SET seq = ? WHERE id = ?", -1, SQLITE_PREPARE_PERSISTENT, &up, nullptr) != SQLITE_OK)
        die("prepare", db);

    std::string body = "{\"sent_ns\":1234567890123456,\"src\":123,\"pad\":\"";
    if (bodySize > body.size() + 2) body.append(bodySize - body.size() - 2, 'x');
    body += "\"}";
    char user[32], cid[64];
    std::vector<std::uint64_t> seqs(rooms, 0);
    std::vector<bool> touched(rooms, false);
    const double start = now(), deadline = start + static_cast<double>(seconds);
    std::size_t done = 0, txns = 0;
    while (done < rows && now() < deadline) {
        exec(db, "BEGIN");
        for (std::size_t k = 0; k < batch && done < rows; ++k, ++done) {
            // Sender i of --senders posts to room i % rooms, as the members of `tongdao bench --chat` do.
            const std::size_t sender = done % senders, r = sender % rooms;
            std::snprintf(user, sizeof user, "bench-m%zu", sender);
            std::snprintf(cid, sizeof cid, "bench-m%zu-%zu", sender, done / senders);
            sqlite3_bind_int64(st, 1, static_cast<sqlite3_int64>(r + 1));
            sqlite3_bind_int64(st, 2, static_cast<sqlite3_int64>(++seqs[r]));
            touched[r] = true;
            sqlite3_bind_int64(st, 3, static_cast<sqlite3_int64>(1764590400000LL + static_cast<long long>(done)));
            sqlite3_bind_text(st, 4, user, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 5, user, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 6, cid, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 7, body.data(), static_cast<int>(body.size()), SQLITE_STATIC);
            if (sqlite3_step(st) != SQLITE_DONE) die("insert", db);
            sqlite3_reset(st);
        }
        for (std::size_t r = 0; r < rooms; ++r) {
            if (!touched[r]) continue;
            touched[r] = false;
            sqlite3_bind_int64(up, 1, static_cast<sqlite3_int64>(seqs[r]));
            sqlite3_bind_int64(up, 2, static_cast<sqlite3_int64>(r + 1));
            if (sqlite3_step(up) != SQLITE_DONE) die("update", db);
            sqlite3_reset(up);
        }
        exec(db, "COMMIT");
        ++txns;
    }
    const double secs = now() - start;
    sqlite3_finalize(st);
    sqlite3_finalize(up);
    sqlite3_close(db);
    std::printf("{\"rows\":%zu,\"seconds\":%.3f,\"rows_per_sec\":%.1f,\"transactions\":%zu,\"batch\":%zu,\"synchronous\":\"%s\","
                "\"body_size\":%zu,\"sqlite_version\":\"%s\"}\n",
                done, secs, secs > 0 ? static_cast<double>(done) / secs : 0.0, txns, batch, sync.c_str(), body.size(), sqlite3_libversion());
    return 0;
}
