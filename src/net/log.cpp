#include "tongdao/log.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <ctime>

namespace tongdao {
namespace {
std::atomic<int> currentLevel{static_cast<int>(LogLevel::info)};
constexpr const char* names[] = {"error", "warn", "info", "debug"};
} // namespace

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
    int n = std::snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ", t.tm_year + 1900,
                          t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, ts.tv_nsec / 1000000,
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
