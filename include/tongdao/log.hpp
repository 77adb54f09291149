#pragma once
/**
 * @file
 * A small logger to standard error, shared by the libraries and the apps: one line per
 * event, with a timestamp and a level, filtered by a process-wide level.
 */

#include <optional>
#include <string_view>

namespace tongdao {

enum class LogLevel { error = 0, warn = 1, info = 2, debug = 3 };

/** Sets the level below which lines are dropped (default: info). Thread-safe. */
void setLogLevel(LogLevel level) noexcept;
LogLevel logLevel() noexcept;
/** Parses "error", "warn", "info" or "debug". */
std::optional<LogLevel> parseLogLevel(std::string_view s) noexcept;

inline bool logEnabled(LogLevel level) noexcept { return static_cast<int>(level) <= static_cast<int>(logLevel()); }

/** "<N>", the syslog priority of `level`, when standard error is the systemd journal
 *  (JOURNAL_STREAM names it), else "": the prefix of every line log() writes, for lines that
 *  go to standard error another way (a program's fatal start-up error). */
const char* journalPriority(LogLevel level) noexcept;

/** Writes one line if `level` is enabled; printf-style. Thread-safe (one write per line). */
void log(LogLevel level, const char* format, ...) __attribute__((format(printf, 2, 3)));

} // namespace tongdao
