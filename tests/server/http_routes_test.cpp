// HTTP routes with methods and prefixes, request bodies by Content-Length (split, pipelined,
// slow, too large, chunked, 100-continue), and handlers that answer later from another
// thread, never, or after the client left. Real loopback sockets.
#include "support/server_harness.hpp"

#include <atomic>

namespace tongdao::test {
namespace {

/** A request with a Content-Length body. */
std::string withBody(std::string_view target, std::string_view body, std::string_view method = "POST",
                     std::string_view extra = {}) {
    return requestText(target, "Content-Length: " + std::to_string(body.size()) + "\r\n" + std::string(extra),
                       method) +
           std::string(body);
}

/** Threads started by handlers, joined (before the server stops) when it goes. */
class Workers {
public:
    ~Workers() { join(); }
    template <class F>
    void run(F f) {
        std::lock_guard lock(m_);
        threads_.emplace_back(std::move(f));
    }
    void join() {
        std::vector<std::thread> all;
        {
            std::lock_guard lock(m_);
            all.swap(threads_);
        }
        for (auto& t : all) t.join();
    }

private:
    std::mutex m_;
    std::vector<std::thread> threads_;
};

/** Runs `f` on `loop` and returns what it returned; false if the loop did not run it in time. */
template <class F>
bool onLoop(net::Loop* loop, F f) {
    if (!loop) return false;
    auto done = std::make_shared<std::promise<bool>>();
    auto result = done->get_future();
    loop->post([done, f]() mutable { done->set_value(f()); });
    if (result.wait_for(defaultWait) != std::future_status::ready) {
        ADD_FAILURE() << "the loop did not run the task";
        return false;
    }
    return result.get();
}

/** Answers `r` with `text` from a worker thread, after `delay`, by posting to its loop. */
void answerLater(Workers& workers, Probe& probe, HttpResponder r, std::string text, Millis delay, int status = 200) {
    workers.run([&probe, r = std::move(r), text = std::move(text), delay, status]() mutable {
        std::this_thread::sleep_for(delay);
        net::Loop* loop = r.loop();
        loop->post([&probe, r = std::move(r), text = std::move(text), status]() mutable {
            probe.add("answer " + text);
            r.respond(HttpResponse{}.text(text, status));
        });
    });
}

/**
 * /echo (POST, PUT: the body back, at once), /api/rooms/ prefix (POST, answered from a thread),
 * /api/rooms/special (exact), /api/ prefix, /items (GET, POST, DELETE: 204), /async (GET from a thread),
 * /hold (kept for the test), /ignore (dropped), /drop-later (dropped on a thread), /throw.
 */
struct RouteServer {
    TestServer ts;
    Probe probe;
    std::atomic<net::Loop*> loop{nullptr};
    std::optional<HttpResponder> held; ///< /hold's responder; touched on the loop only
    std::uint16_t port = 0;
    Workers workers; ///< last: joined before anything above goes

    explicit RouteServer(ServerOptions o = testOptions()) : ts(o) {
        auto& s = ts.server;
        auto echo = [](const HttpRequest& req, HttpResponder res) {
            res.respond(HttpResponse{}.text(std::string(req.method()) + " " + std::string(req.body())));
        };
        s.route("POST", "/echo", echo);
        s.route("PUT", "/echo", echo);
        s.route("POST", "/api/rooms/*", [this](const HttpRequest& req, HttpResponder res) {
            const std::string path(req.path());
            probe.add("call " + path);
            const auto delay = path.find("slow") != std::string::npos ? 150ms : 10ms;
            answerLater(workers, probe, std::move(res), "room " + path + " " + std::string(req.body()), delay, 201);
        });
        s.route("POST", "/api/rooms/special", [](const HttpRequest&, HttpResponder res) {
            res.respond(HttpResponse{}.text("special"));
        });
        s.route("POST", "/api/*", [](const HttpRequest& req, HttpResponder res) {
            res.respond(HttpResponse{}.text("api " + std::string(req.path())));
        });
        s.route("GET", "/items",
                [](const HttpRequest&, HttpResponder res) { res.respond(HttpResponse{}.text("items")); });
        s.route("POST", "/items",
                [](const HttpRequest&, HttpResponder res) { res.respond(HttpResponse{}.text("added")); });
        s.route("GET", "/async", [this](const HttpRequest& req, HttpResponder res) {
            probe.add("async " + std::string(req.method()));
            answerLater(workers, probe, std::move(res), "async get\n", 10ms);
        });
        s.route("POST", "/hold", [this](const HttpRequest&, HttpResponder res) {
            loop = res.loop();
            held.emplace(std::move(res));
            probe.add("held");
        });
        s.route("POST", "/ignore", [](const HttpRequest&, HttpResponder) {});
        s.route("POST", "/drop-later", [this](const HttpRequest&, HttpResponder res) {
            workers.run([r = std::move(res)]() mutable {
                std::this_thread::sleep_for(20ms);
                HttpResponder gone = std::move(r); // destroyed here, on this thread, unanswered
            });
        });
        s.route("DELETE", "/items", [](const HttpRequest&, HttpResponder res) {
            HttpResponse r;
            r.status = 204;
            r.body = "ignored";
            res.respond(std::move(r));
        });
        s.route("POST", "/throw", [](const HttpRequest&, HttpResponder) { throw std::runtime_error("route failed"); });
        s.route("GET", "/headers", [](const HttpRequest&, HttpResponder res) {
            HttpResponse r;
            r.text("h");
            r.setHeader("Content-Length", "99").setHeader("Bad Name", "x").setHeader("X-Ok", "yes");
            r.setHeader("Connection", "close");
            res.respond(std::move(r));
        });
        port = ts.start();
    }
};

// --- bodies ---------------------------------------------------------------------------------

TEST(HttpBodies, PostBodyIsEchoed) {
    RouteServer s;
    WsClient c(s.port);
    const auto r = c.request(withBody("/echo", "{\"text\":\"hi\"}", "POST", "Content-Type: application/json\r\n"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "POST {\"text\":\"hi\"}");
    const auto put = c.request(withBody("/echo", "two", "PUT"));
    ASSERT_TRUE(put);
    EXPECT_EQ(put->body, "PUT two");
    EXPECT_FALSE(c.waitEof(100ms)) << "keep-alive";
}

TEST(HttpBodies, BodySplitAcrossManyWrites) {
    RouteServer s;
    WsClient c(s.port);
    const std::string body = "abcdefghijklmnopqrstuvwxyz";
    const auto text = withBody("/echo", body);
    const auto head = text.size() - body.size();
    ASSERT_TRUE(c.sendRaw(text.substr(0, head - 3))); // the head split too
    std::this_thread::sleep_for(5ms);
    ASSERT_TRUE(c.sendRaw(text.substr(head - 3, 3)));
    for (std::size_t i = 0; i < body.size(); i += 2) {
        std::this_thread::sleep_for(5ms);
        ASSERT_TRUE(c.sendRaw(body.substr(i, 2)));
    }
    const auto r = c.readHttp();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body, "POST " + body);
}

TEST(HttpBodies, LargeBodyOverManyReads) {
    RouteServer s;
    WsClient c(s.port);
    std::string body(700 * 1024, 'x');
    for (std::size_t i = 0; i < body.size(); i += 997) body[i] = static_cast<char>('a' + i % 26);
    const auto r = c.request(withBody("/echo", body));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_TRUE(r->body == "POST " + body) << "body of " << r->body.size() << " bytes differs";
}

TEST(HttpBodies, RepeatedEqualContentLengthsAreOneLength) {
    RouteServer s;
    WsClient c(s.port);
    const auto r = c.request(requestText("/echo", "Content-Length: 3\r\nContent-Length: 3, 3\r\n", "POST") + "abc");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body, "POST abc");
}

TEST(HttpBodies, BadContentLengthIs400AndClosed) {
    for (const std::string_view field : {"Content-Length: abc\r\n", "Content-Length: 5, 6\r\n",
                                         "Content-Length: 5\r\nContent-Length: 6\r\n", "Content-Length: -1\r\n",
                                         "Content-Length: \r\n", "Content-Length: 3,\r\n"}) {
        RouteServer s;
        WsClient c(s.port);
        const auto r = c.request(requestText("/echo", field, "POST") + "abcde");
        ASSERT_TRUE(r) << field;
        EXPECT_EQ(r->status, 400) << field;
        EXPECT_EQ(r->body, "bad Content-Length\n");
        EXPECT_TRUE(c.waitEof()) << field;
    }
}

TEST(HttpBodies, TooLargeContentLengthIs413AtOnce) {
    auto o = testOptions();
    o.maxBodyBytes = 16;
    RouteServer s(o);
    {
        WsClient c(s.port);
        const auto r = c.request(withBody("/echo", std::string(16, 'a'))); // the limit is inclusive
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 200);
    }
    WsClient c(s.port);
    // Only the head is sent: the answer must not wait for the body.
    const auto r = c.request(requestText("/echo", "Content-Length: 17\r\n", "POST"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 413);
    EXPECT_TRUE(r->head.starts_with("HTTP/1.1 413 Content Too Large")) << r->head;
    EXPECT_EQ(r->header("Connection"), "close");
    EXPECT_TRUE(c.waitEof());
}

TEST(HttpBodies, DefaultLimitIsOneMebibyte) {
    RouteServer s;
    WsClient c(s.port);
    const auto r = c.request(requestText("/echo", "Content-Length: 1048577\r\n", "POST"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 413);
    WsClient huge(s.port);
    const auto h = huge.request(requestText("/echo", "Content-Length: 99999999999999999999999\r\n", "POST"));
    ASSERT_TRUE(h);
    EXPECT_EQ(h->status, 413);
}

TEST(HttpBodies, ChunkedIs411AndClosed) {
    RouteServer s;
    WsClient c(s.port);
    const auto r = c.request(requestText("/echo", "Transfer-Encoding: chunked\r\n", "POST") + "3\r\nabc\r\n0\r\n\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 411);
    EXPECT_TRUE(r->head.starts_with("HTTP/1.1 411 Length Required")) << r->head;
    EXPECT_EQ(r->header("Connection"), "close");
    EXPECT_TRUE(c.waitEof());
}

TEST(HttpBodies, ExpectContinueGets100ThenTheAnswer) {
    RouteServer s;
    WsClient c(s.port);
    ASSERT_TRUE(c.sendRaw(requestText("/echo", "Content-Length: 5\r\nExpect: 100-continue\r\n", "POST")));
    const auto cont = c.readHttp(true);
    ASSERT_TRUE(cont);
    EXPECT_EQ(cont->status, 100);
    EXPECT_EQ(cont->head, "HTTP/1.1 100 Continue\r\n\r\n");
    ASSERT_TRUE(c.sendRaw("hello"));
    const auto r = c.readHttp();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "POST hello");
    EXPECT_FALSE(c.waitEof(100ms)) << "keep-alive";
}

TEST(HttpBodies, ExpectContinueTooLargeIs413Without100) {
    auto o = testOptions();
    o.maxBodyBytes = 4;
    RouteServer s(o);
    WsClient c(s.port);
    const auto r = c.request(requestText("/echo", "Content-Length: 5\r\nExpect: 100-continue\r\n", "POST"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 413);
    EXPECT_TRUE(c.waitEof());
}

TEST(HttpBodies, ExpectContinueToNoRouteIsAnsweredWithoutTheBody) {
    RouteServer s;
    WsClient c(s.port);
    const auto r = c.request(requestText("/nowhere", "Content-Length: 5\r\nExpect: 100-continue\r\n", "POST"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404);
    EXPECT_EQ(r->header("Connection"), "close"); // the body was not read
    EXPECT_TRUE(c.waitEof());
}

TEST(HttpBodies, SlowBodyGets408AndIsClosed) {
    auto o = testOptions();
    o.handshakeTimeout = 1;
    RouteServer s(o);
    WsClient c(s.port);
    const auto begin = Clock::now();
    ASSERT_TRUE(c.sendRaw(requestText("/echo", "Content-Length: 20\r\n", "POST")));
    // A byte every 150 ms keeps the connection busy, but the whole request has a deadline.
    std::optional<HttpReply> r;
    for (int i = 0; i < 20 && !r; ++i) {
        ASSERT_TRUE(c.sendRaw("x"));
        if (c.readSome(150ms)) r = c.readHttp(false, 500ms);
    }
    if (!r) r = c.readHttp(false, 2000ms);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 408);
    EXPECT_TRUE(c.waitEof(1000ms));
    EXPECT_LE(Clock::now() - begin, 3000ms);
}

TEST(HttpBodies, TwoPipelinedPostsAreAnsweredInOrder) {
    RouteServer s;
    WsClient c(s.port);
    // The first is answered later than the second would be: the second waits for it.
    ASSERT_TRUE(c.sendRaw(withBody("/api/rooms/slow", "one") + withBody("/api/rooms/fast", "two") +
                          requestText("/items")));
    const auto a = c.readHttp();
    const auto b = c.readHttp();
    const auto d = c.readHttp();
    ASSERT_TRUE(a && b && d);
    EXPECT_EQ(a->status, 201);
    EXPECT_EQ(a->body, "room /api/rooms/slow one");
    EXPECT_EQ(b->body, "room /api/rooms/fast two");
    EXPECT_EQ(d->body, "items");
    const std::vector<std::string> order = {"call /api/rooms/slow", "answer room /api/rooms/slow one",
                                            "call /api/rooms/fast", "answer room /api/rooms/fast two"};
    EXPECT_EQ(s.probe.items(), order) << "one request at a time";
    EXPECT_FALSE(c.waitEof(100ms)) << "keep-alive";
}

// --- routing -------------------------------------------------------------------------------

TEST(HttpRouting, PrefixesExactPathsAndTheLongestPrefix) {
    RouteServer s;
    WsClient c(s.port);
    const auto exact = c.request(withBody("/api/rooms/special", "x"));
    ASSERT_TRUE(exact);
    EXPECT_EQ(exact->body, "special");
    const auto longest = c.request(withBody("/api/rooms/lobby/messages", "hi"));
    ASSERT_TRUE(longest);
    EXPECT_EQ(longest->body, "room /api/rooms/lobby/messages hi");
    const auto shorter = c.request(withBody("/api/rooms", "x")); // not under "/api/rooms/"
    ASSERT_TRUE(shorter);
    EXPECT_EQ(shorter->body, "api /api/rooms");
    const auto none = c.request(withBody("/apix", "x"));
    ASSERT_TRUE(none);
    EXPECT_EQ(none->status, 404);
    const auto query = c.request(withBody("/api/rooms/special?x=1", "x"));
    ASSERT_TRUE(query);
    EXPECT_EQ(query->body, "special");
}

TEST(HttpRouting, OtherMethodIs405WithAllow) {
    RouteServer s;
    WsClient c(s.port);
    const auto r = c.request(requestText("/items", {}, "OPTIONS"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 405);
    EXPECT_EQ(r->header("Allow"), "GET, HEAD, POST, DELETE");
    // The body of a refused method is read, so the connection goes on.
    const auto put = c.request(withBody("/items", "abc", "PUT"));
    ASSERT_TRUE(put);
    EXPECT_EQ(put->status, 405);
    const auto prefixed = c.request(requestText("/api/rooms/x", {}, "GET"));
    ASSERT_TRUE(prefixed);
    EXPECT_EQ(prefixed->status, 405);
    EXPECT_EQ(prefixed->header("Allow"), "POST");
    const auto post = c.request(withBody("/items", "abc"));
    ASSERT_TRUE(post);
    EXPECT_EQ(post->body, "added");
    const auto unknown = c.request(withBody("/nowhere", "abc"));
    ASSERT_TRUE(unknown);
    EXPECT_EQ(unknown->status, 404);
    EXPECT_FALSE(c.waitEof(100ms)) << "keep-alive";
}

TEST(HttpRouting, HeadOnAnAsyncGetRoute) {
    RouteServer s;
    WsClient c(s.port);
    const auto head = c.request(requestText("/async", {}, "HEAD"), true);
    ASSERT_TRUE(head);
    EXPECT_EQ(head->status, 200);
    EXPECT_EQ(head->header("Content-Length"), "10");
    EXPECT_FALSE(c.readSome(150ms)) << "a body followed the HEAD response";
    const auto get = c.request(requestText("/async"));
    ASSERT_TRUE(get);
    EXPECT_EQ(get->body, "async get\n");
    EXPECT_EQ(s.probe.count("async HEAD"), 1u);
    EXPECT_EQ(s.probe.count("async GET"), 1u);
}

TEST(HttpRouting, NoContentHasNoLengthAndNoBody) {
    RouteServer s;
    WsClient c(s.port);
    const auto r = c.request(requestText("/items", {}, "DELETE"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 204);
    EXPECT_FALSE(r->has("Content-Length")); // RFC 9110 §8.6
    EXPECT_FALSE(c.readSome(100ms)) << "a body followed the 204";
    const auto next = c.request(requestText("/items"));
    ASSERT_TRUE(next);
    EXPECT_EQ(next->body, "items");
}

TEST(HttpRouting, ResponseHeadersAreChecked) {
    RouteServer s;
    WsClient c(s.port);
    const auto r = c.request(requestText("/headers"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->header("Content-Length"), "1"); // the handler's own was dropped
    EXPECT_EQ(r->headers.count("content-length"), 1u);
    EXPECT_EQ(r->header("X-Ok"), "yes");
    EXPECT_FALSE(r->has("Bad Name"));
    EXPECT_EQ(r->header("Connection"), "close");
    EXPECT_TRUE(c.waitEof());
}

TEST(HttpRouting, BadRegistrationsThrow) {
    Server server(testOptions());
    auto h = [](const HttpRequest&, HttpResponder) {};
    EXPECT_THROW(server.route("HEAD", "/x", h), std::invalid_argument);
    EXPECT_THROW(server.route("post", "/x", h), std::invalid_argument);
    EXPECT_THROW(server.route("GET", "/x", AsyncHttpHandler{}), std::invalid_argument);
    server.route("GET", "/x", h);
    server.listen();
    EXPECT_THROW(server.route("GET", "/y", h), std::logic_error);
}

// --- answers -------------------------------------------------------------------------------

TEST(HttpAnswers, AsyncAnswerFromAnotherThread) {
    RouteServer s;
    WsClient c(s.port);
    const auto r = c.request(withBody("/api/rooms/lobby/messages", "{\"text\":\"hi\"}"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 201);
    EXPECT_TRUE(r->head.starts_with("HTTP/1.1 201 Created")) << r->head;
    EXPECT_EQ(r->body, "room /api/rooms/lobby/messages {\"text\":\"hi\"}");
}

TEST(HttpAnswers, UnansweredResponderIs500) {
    RouteServer s;
    WsClient c(s.port);
    const auto r = c.request(withBody("/ignore", "x"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 500);
    EXPECT_EQ(r->body, "handler did not answer\n");
    const auto later = c.request(withBody("/drop-later", "x")); // dropped on a worker thread
    ASSERT_TRUE(later);
    EXPECT_EQ(later->status, 500);
    EXPECT_EQ(later->body, "handler did not answer\n");
    const auto next = c.request(requestText("/health"));
    ASSERT_TRUE(next);
    EXPECT_EQ(next->status, 200);
}

TEST(HttpAnswers, HandlerThatThrowsIs500) {
    RouteServer s;
    WsClient c(s.port);
    const auto r = c.request(withBody("/throw", "x"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 500);
    EXPECT_EQ(r->body, "internal server error\n");
}

TEST(HttpAnswers, AnswerAfterTheClientLeftDoesNothing) {
    RouteServer s;
    {
        WsClient c(s.port);
        ASSERT_TRUE(c.sendRaw(withBody("/hold", "x")));
        ASSERT_TRUE(s.probe.waitFor("held"));
        EXPECT_FALSE(onLoop(s.loop, [&] { return s.held->aborted(); }));
    } // the client closes
    EXPECT_TRUE(eventually([&] { return onLoop(s.loop, [&] { return s.held->aborted(); }); }));
    EXPECT_TRUE(onLoop(s.loop, [&] {
        s.held->respond(HttpResponse{}.text("too late"));
        const bool quiet = !s.held->answered() && s.held->aborted();
        s.held.reset(); // dropped after the client left: no 500 either
        return quiet;
    }));
    WsClient other(s.port);
    const auto r = other.request(requestText("/health"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
}

TEST(HttpAnswers, AnswerNotGivenInTimeIs503) {
    auto o = testOptions();
    o.handshakeTimeout = 1;
    RouteServer s(o);
    WsClient c(s.port);
    const auto begin = Clock::now();
    ASSERT_TRUE(c.sendRaw(withBody("/hold", "x")));
    const auto r = c.readHttp(false, 3000ms);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503);
    EXPECT_LE(Clock::now() - begin, 3000ms);
    EXPECT_TRUE(onLoop(s.loop, [&] {
        const bool aborted = s.held->aborted();
        s.held->respond(HttpResponse{}.text("too late")); // nothing is written
        s.held.reset();
        return aborted;
    }));
    const auto next = c.request(requestText("/health"));
    ASSERT_TRUE(next);
    EXPECT_EQ(next->body, "ok\n");
}

// A worker still holding responders when the server shuts down: it sees them aborted (from
// its own thread), and what it does with them then (answer, post, drop) is harmless.
TEST(HttpAnswers, ShutdownAbortsTheWaitOfAWorker) {
    RouteServer s;
    std::promise<void> go;
    auto goFuture = go.get_future().share();
    std::atomic<int> abortedSeen{0};
    WsClient a(s.port), b(s.port);
    {
        // Two responders handed to one worker through /hold, one at a time.
        ASSERT_TRUE(a.sendRaw(withBody("/hold", "1")));
        ASSERT_TRUE(s.probe.waitFor("held"));
        std::vector<HttpResponder> taken;
        ASSERT_TRUE(onLoop(s.loop, [&] {
            taken.push_back(std::move(*s.held));
            s.held.reset();
            return true;
        }));
        ASSERT_TRUE(b.sendRaw(withBody("/hold", "2")));
        ASSERT_TRUE(s.probe.waitForPrefix("held", 2));
        ASSERT_TRUE(onLoop(s.loop, [&] {
            taken.push_back(std::move(*s.held));
            s.held.reset();
            return true;
        }));
        s.workers.run([&abortedSeen, goFuture, taken = std::move(taken)]() mutable {
            goFuture.wait();
            for (auto& r : taken) abortedSeen += r.aborted() ? 1 : 0;
            taken[0].respond(HttpResponse{}.text("late")); // from this thread: not waiting, nothing
            net::Loop* loop = taken[1].loop();
            loop->post([r = std::move(taken[1])]() mutable { r.respond(HttpResponse{}.text("late")); });
        });
    }
    s.ts.stop();
    go.set_value();
    s.workers.join();
    EXPECT_EQ(abortedSeen.load(), 2);
    EXPECT_TRUE(a.waitEof());
    EXPECT_TRUE(b.waitEof());
} // the post that never ran goes with the server, and its responder with it

TEST(HttpAnswers, WhileAwaitedTheNextRequestWaits) {
    RouteServer s;
    WsClient c(s.port);
    ASSERT_TRUE(c.sendRaw(withBody("/hold", "x") + requestText("/health")));
    ASSERT_TRUE(s.probe.waitFor("held"));
    EXPECT_FALSE(c.readSome(150ms)) << "the pipelined request was answered first";
    EXPECT_TRUE(onLoop(s.loop, [&] {
        s.held->respond(HttpResponse{}.text("held answer"));
        return s.held->answered();
    }));
    const auto a = c.readHttp();
    const auto b = c.readHttp();
    ASSERT_TRUE(a && b);
    EXPECT_EQ(a->body, "held answer");
    EXPECT_EQ(b->body, "ok\n");
}

} // namespace
} // namespace tongdao::test
