#pragma once
// The one-node store: SQLite in WAL mode. One writer thread owns every write and each
// room's next seq; whatever is pending when it wakes goes in one transaction (group commit:
// one sync for the whole batch). Readers run on threads of their own, on connections of
// their own, so history and catch-up never wait for a commit.

#include "store.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <thread>

namespace tongdao::chat {

namespace sqlite {
class Db;
}

struct SqliteOptions {
    std::filesystem::path dir;              ///< the data directory (created if missing); the file is chat.db in it
    bool fullSync = true;                   ///< synchronous=FULL (survives power loss) or NORMAL (a killed process)
    std::uint64_t retentionMessages = 0;    ///< events kept per room; 0 = all
    std::uint32_t retentionDays = 0;        ///< days kept; 0 = forever
    std::size_t maxQueue = 100000;          ///< writes (and reads) waiting, beyond which calls fail unavailable
    std::uint32_t maxBatch = 2000;          ///< writes in one transaction
    /** How long the writer lets writes gather after the first before it commits (0: at once). */
    std::chrono::microseconds commitDelay{0};
    unsigned readers = 2;
};

class SqliteStore final : public Store {
public:
    /** Opens or creates the database and migrates its schema. Throws std::runtime_error. */
    explicit SqliteStore(SqliteOptions options);
    ~SqliteStore() override;

    void openRoom(std::string room, std::function<void(StoreStatus, RoomInfo)> done) override;
    void append(AppendRequest request, std::function<void(AppendResult)> done) override;
    void read(ReadQuery query, std::function<void(ReadResult)> done) override;
    void memberInfo(std::string room, std::string user, std::function<void(MemberInfo)> done) override;
    void addMember(std::string room, std::string user, std::uint64_t readSeq,
                   std::function<void(MemberInfo)> done) override;
    void removeMember(std::string room, std::string user, std::function<void(StoreStatus)> done) override;
    void markRead(std::string room, std::string user, std::uint64_t seq,
                  std::function<void(StoreStatus, std::uint64_t, bool)> done) override;
    void userRooms(std::string user, std::uint32_t limit,
                   std::function<void(StoreStatus, std::vector<UserRoom>)> done) override;
    void listRooms(std::uint32_t limit, std::function<void(StoreStatus, std::vector<RoomSummary>)> done) override;
    StoreStats stats() const override;
    void close() override;

    /** The schema version this build writes. */
    static constexpr int schemaVersion = 1;

    struct Writer;

private:
    /** A write: `apply` runs inside the batch's transaction; `finish(ok)` after its COMMIT or ROLLBACK. */
    struct WriteOp {
        std::function<void(Writer&)> apply;
        std::function<void(bool committed)> finish;
    };
    using ReadOp = std::function<void(sqlite::Db*)>; ///< null Db: the store is overloaded or closing

    void submit(WriteOp op);
    void submitRead(ReadOp op);
    void writerMain();
    void readerMain(unsigned index);
    void commitBatch(std::vector<WriteOp>& batch);

    SqliteOptions options_;
    std::filesystem::path file_;
    std::unique_ptr<Writer> writer_;

    std::mutex wmu_;
    std::condition_variable wcv_;
    std::deque<WriteOp> writes_;
    std::mutex rmu_;
    std::condition_variable rcv_;
    std::deque<ReadOp> reads_;
    bool stopping_ = false; ///< under both mutexes

    std::thread writerThread_;
    std::vector<std::thread> readerThreads_;

    StoreCounters counters_;
};

} // namespace tongdao::chat
