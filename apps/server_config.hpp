#pragma once
// tongdao-server --config FILE: the settings of a TOML file, one key per command-line option
// (its name without the dashes). The command line and the TONGDAO_* environment win over the
// file; a key the server does not know, or a value of the wrong type, is refused with the
// file, line and column and the reason — also where the command line overrides it.

#include <CLI/CLI.hpp>

#include <stdexcept>
#include <string>

namespace tongdao::app {

/** A configuration file that cannot be used; what() is "FILE:LINE:COLUMN: reason". */
struct ConfigError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/**
 * Applies `path` to the options of `app` (already parsed from the command line) that neither
 * the command line nor the environment set. Throws ConfigError.
 */
void applyConfigFile(CLI::App& app, const std::string& path);

} // namespace tongdao::app
