#include "server_config.hpp"

#include <toml++/toml.h>

#include <string_view>
#include <vector>

namespace tongdao::app {

namespace {

std::string where(const std::string& path, const toml::source_region& at) {
    return path + ":" + std::to_string(at.begin.line) + ":" + std::to_string(at.begin.column);
}

/** A TOML scalar as the text CLI11 converts, if its type fits what the option takes. */
bool scalarText(const toml::node& node, std::string_view type, std::string& out, std::string& expected) {
    const bool integer = type.starts_with("INT") || type.starts_with("UINT");
    const bool number = type.starts_with("FLOAT") || type.starts_with("NUMBER");
    if (integer) {
        expected = "an integer";
        if (const auto* v = node.as_integer()) return out = std::to_string(v->get()), true;
        return false;
    }
    if (number) {
        expected = "a number";
        if (const auto* v = node.as_integer()) return out = std::to_string(v->get()), true;
        if (const auto* v = node.as_floating_point()) {
            char buf[64];
            std::snprintf(buf, sizeof buf, "%.17g", v->get());
            return out = buf, true;
        }
        return false;
    }
    expected = "a string";
    if (const auto* v = node.as_string()) return out = v->get(), true;
    return false;
}

} // namespace

void applyConfigFile(CLI::App& app, const std::string& path) {
    toml::table table;
    try {
        table = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
        const auto& at = e.source();
        if (at.begin.line == 0) throw ConfigError(path + ": " + std::string(e.description()));
        throw ConfigError(where(path, at) + ": " + std::string(e.description()));
    }
    for (const auto& [k, node] : table) {
        const std::string key(k.str());
        const auto at = where(path, k.source().begin.line ? k.source() : node.source());
        CLI::Option* opt = key == "config" || key == "help" ? nullptr : app.get_option_no_throw("--" + key);
        if (!opt) throw ConfigError(at + ": unknown key '" + key + "' (tongdao-server --help lists the options)");
        std::vector<std::string> values;
        if (opt->get_expected_max() == 0) {
            const auto* b = node.as_boolean();
            if (!b) throw ConfigError(at + ": '" + key + "' is true or false");
            values.emplace_back(b->get() ? "true" : "false");
        } else if (opt->get_expected_max() > 1) {
            const auto* array = node.as_array();
            if (!array) throw ConfigError(at + ": '" + key + "' is an array, as [\"a\", \"b\"]");
            for (const auto& item : *array) {
                std::string text, expected;
                if (!scalarText(item, opt->get_type_name(), text, expected))
                    throw ConfigError(where(path, item.source()) + ": the items of '" + key + "' are " + expected);
                values.push_back(std::move(text));
            }
            if (values.empty()) continue;
        } else {
            std::string text, expected;
            if (!scalarText(node, opt->get_type_name(), text, expected))
                throw ConfigError(at + ": '" + key + "' is " + expected);
            values.push_back(std::move(text));
        }
        // Checked above whatever wins; used only where neither the command line nor the
        // environment gave the option.
        if (opt->count() > 0) continue;
        for (auto& v : values) opt->add_result(v);
        try {
            opt->run_callback(); // converts and checks it as the command line would
        } catch (const CLI::Error& e) {
            throw ConfigError(at + ": " + e.what());
        }
    }
}

} // namespace tongdao::app
