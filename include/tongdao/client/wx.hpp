#pragma once
/**
 * @file
 * The mini-program's global socket functions (`wx.connectSocket`, `wx.onSocketOpen`, ...),
 * with their one-connection rule: a new `connectSocket` first closes the connection made
 * by the previous one. Each `onSocketXxx` sets the one listener of its kind (a later call
 * replaces it); listeners stay set across connections. They run on `defaultRuntime()`.
 *
 * @code
 *   tongdao::wx::connectSocket({.url = "ws://127.0.0.1:8080/echo"});
 *   tongdao::wx::onSocketOpen([](const tongdao::OnOpenResult&) {
 *       tongdao::wx::sendSocketMessage({.data = std::string("hi")});
 *   });
 *   tongdao::wx::onSocketMessage([](const tongdao::OnMessageResult& r) { ... });
 *   tongdao::defaultRuntime().run();
 * @endcode
 *
 * @par Thread Safety
 * Every function may be called from any thread.
 */

#include "tongdao/client/socket_task.hpp"

namespace tongdao::wx {

/** Closes the current connection (code 1000), if any, and opens a new one. */
std::shared_ptr<SocketTask> connectSocket(ConnectSocketOptions options);
/** Sends on the current connection; "sendSocketMessage:fail WebSocket is not connected" without one. */
void sendSocketMessage(SendOptions options);
/** Closes the current connection; "closeSocket:fail WebSocket is not connected" without one. */
void closeSocket(CloseOptions options = {});

void onSocketOpen(std::function<void(const OnOpenResult&)> listener);
void onSocketMessage(std::function<void(const OnMessageResult&)> listener);
void onSocketError(std::function<void(const OnErrorResult&)> listener);
void onSocketClose(std::function<void(const OnCloseResult&)> listener);

/** Forgets the current connection (aborting it without callbacks) and every listener; for tests. */
void reset();

} // namespace tongdao::wx
