// libFuzzer target: the chat protocol's request parser (src/chat/wire.cpp) and the token
// verifier (src/chat/auth.cpp). Whatever the bytes, nothing crashes, every failure is a
// Failure with a code, and every reply or event written from what was read is valid JSON.

#include "chat/auth.hpp"
#include "chat/wire.hpp"

#include <boost/json/parse.hpp>

#include <cstdlib>
#include <string>

namespace {

using namespace tongdao::chat;

void mustBeJson(const std::string& s) {
    std::error_code ec;
    boost::json::parse(s, ec);
    if (ec) std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
    if (data[0] == 'T') {
        // A token: verified against a fixed secret, at a fixed time.
        static const TokenVerifier verifier("fuzz-secret");
        std::string why;
        const auto id = verifier.verify(text, 1'700'000'000, why);
        if (!id && why.empty()) std::abort();
        if (id) (void)id->mayJoin("lobby");
        return 0;
    }
    Request req;
    const ParseLimits limits{4096, 32};
    if (const auto f = parseRequest(text, limits, req)) {
        if (f->message.empty()) std::abort();
        mustBeJson(errorReply(req.id, f->code, f->message));
        return 0;
    }
    mustBeJson(okReply(req.id).done());
    const auto& o = req.fields;
    std::string_view room, cid, name;
    std::uint64_t since = 0, target = 0, limit = 0;
    bool has = false, flag = false;
    std::string body;
    StoredEvent e;
    if (!needRoom(o, room)) {
        if (!validRoomName(room)) std::abort();
    }
    (void)optSeq(o, "since", since, has);
    (void)optSeq(o, "target", target, has);
    (void)optSeq(o, "limit", limit, has);
    (void)optBool(o, "excludeSelf", flag);
    if (!needString(o, "cid", cid) && validCid(cid)) e.cid = std::string(cid);
    if (!needString(o, "name", name) && validName(name)) e.name = std::string(name);
    if (!needBody(o, 1024, body)) {
        if (body.size() > 1024) std::abort();
        e.body = body;
        e.seq = since;
        e.target = target;
        e.user = std::string(name);
        for (auto kind : {EventKind::message, EventKind::edit, EventKind::remove}) {
            e.kind = kind;
            mustBeJson(eventJson(room, e));
        }
    }
    return 0;
}
