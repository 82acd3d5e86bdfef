//! Japanese: "2024年3月1日 12:08 John Doe: …".

use super::{MediaWords, Words};

pub const WORDS: Words = Words {
    note_time: "%Y年%-m月%-d日 %H:%M",
    line_before: "",
    sender_first: false,
    line_between: " ",
    line_after: ": ",
    link_before: "",
    link_text: "こちら",
    link_after: "から会話を開けます",
    link_plain: "会話を開く:",
    unknown_sender: "不明",
    media: MediaWords {
        image: "画像",
        video: "動画",
        audio: "音声",
        voice: "ボイスメッセージ",
        document: "ドキュメント",
        sticker: "ステッカー",
        location: "位置情報",
        contact: "連絡先",
        link: "リンク",
        file: "ファイル",
    },
};
