#include "tongdao/log.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace tongdao {
namespace {
std::atomic<int> currentLevel{static_cast<int>(LogLevel::info)};
constexpr const char* names[] = {"error", "warn", "info", "debug"};
// syslog priorities (err, warning, info, debug), for the journal's "<N>" line prefix.
constexpr const char* priorities[] = {"<3>", "<4>", "<6>", "<7>"};

/** Standard error is the systemd journal: JOURNAL_STREAM names its device and inode
 *  (systemd.exec(5)). A stream that was redirected elsewhere since does not match. */
bool stderrIsJournal() noexcept {
    const char* js = std::getenv("JOURNAL_STREAM");
    if (!js) return false;
    unsigned long long dev = 0, ino = 0;
    if (std::sscanf(js, "%llu:%llu", &dev, &ino) != 2) return false;
    struct stat st {};
    return ::fstat(STDERR_FILENO, &st) == 0 && static_cast<unsigned long long>(st.st_dev) == dev &&
           static_cast<unsigned long long>(st.st_ino) == ino;
}
} // namespace

const char* journalPriority(LogLevel level) noexcept {
    static const bool journal = stderrIsJournal();
    return journal ? priorities[static_cast<int>(level)] : "";
}

void setLogLevel(LogLevel level) noexcept { currentLevel.store(static_cast<int>(level), std::memory_order_relaxed); }

LogLevel logLevel() noexcept { return static_cast<LogLevel>(currentLevel.load(std::memory_order_relaxed)); }

std::optional<LogLevel> parseLogLevel(std::string_view s) noexcept {
    for (int i = 0; i < 4; ++i)
        if (s == names[i]) return static_cast<LogLevel>(i);
    if (s == "warning") return LogLevel::warn;
    return std::nullopt;
}

void log(LogLevel level, const char* format, ...) {
    if (!logEnabled(level)) return;
    char line[1024];
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    tm t{};
    ::gmtime_r(&ts.tv_sec, &t);
    // Into the journal, each line starts with its syslog priority, which journald takes off and
    // files (`journalctl -p warning` then selects the warnings and errors).
    int n = std::snprintf(line, sizeof line, "%s%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ",
                          journalPriority(level), t.tm_year + 1900, t.tm_mon + 1,
                          t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, ts.tv_nsec / 1000000,
                          names[static_cast<int>(level)]);
    va_list args;
    va_start(args, format);
    const int m = std::vsnprintf(line + n, sizeof line - static_cast<std::size_t>(n) - 1, format, args);
    va_end(args);
    n = m < 0 ? n : std::min<int>(n + m, static_cast<int>(sizeof line) - 2);
    line[n++] = '\n';
    // One write per line, so lines from several threads do not interleave.
    [[maybe_unused]] const auto w = ::write(STDERR_FILENO, line, static_cast<std::size_t>(n));
}

} // namespace tongdao
