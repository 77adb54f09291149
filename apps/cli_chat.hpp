#pragma once
// `tongdao chat`: the terminal chat client (cli_chat.cpp).

#include <CLI/CLI.hpp>

#include <csignal>
#include <functional>
#include <string>

namespace tongdao::app {

struct ChatArgs {
    std::string url, room;
    std::string name = "guest";
    std::string token, tokenFile, ca;
    int history = 20;
    bool insecure = false;
};

/** Adds the `chat` subcommand; `selected` runs when the command line chose it. */
void addChat(CLI::App& app, ChatArgs& args, const std::function<void()>& selected);
/** Runs the client until the end of input (or a signal sets `interrupted`); the exit status. */
int runChat(ChatArgs args, const volatile std::sig_atomic_t& interrupted);

} // namespace tongdao::app
