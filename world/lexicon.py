"""Bilingual word lists the world is built from: name syllables and attribute values (EN, ZH)."""

from __future__ import annotations

# Name syllables: English spelling and the Chinese character used to transliterate it. Every
# Chinese character appears once, so a name's Chinese form is determined by its English form.
SYLLABLES: list[tuple[str, str]] = [
    ("ka", "卡"), ("lo", "洛"), ("mi", "米"), ("ra", "拉"), ("ven", "文"), ("ta", "塔"), ("ri", "里"),
    ("no", "诺"), ("sa", "萨"), ("bel", "贝"), ("dor", "多"), ("fen", "芬"), ("gal", "加"), ("han", "翰"),
    ("is", "伊"), ("jor", "乔"), ("kel", "凯"), ("lin", "林"), ("mor", "莫"), ("nel", "内"), ("or", "奥"),
    ("pel", "佩"), ("quin", "昆"), ("ros", "罗"), ("sel", "塞"), ("tor", "托"), ("ul", "乌"), ("var", "瓦"),
    ("wen", "温"), ("zan", "赞"), ("yor", "约"), ("zel", "泽"), ("bri", "布"), ("dan", "丹"), ("el", "埃"),
    ("fa", "法"), ("gor", "戈"), ("ha", "哈"), ("len", "伦"), ("ma", "玛"), ("nis", "尼"), ("po", "波"),
    ("ru", "鲁"), ("sun", "桑"), ("te", "特"), ("vi", "维"), ("wil", "威"), ("ya", "娅"), ("de", "德"),
    ("ber", "伯"), ("cor", "科"), ("lu", "卢"), ("mar", "马"), ("ter", "泰"), ("ani", "安"), ("om", "翁"),
]

# (english, chinese) attribute values
PROFESSIONS = [
    ("engineer", "工程师"), ("baker", "面包师"), ("painter", "画家"), ("doctor", "医生"),
    ("teacher", "教师"), ("pilot", "飞行员"), ("chemist", "化学家"), ("farmer", "农民"),
    ("musician", "音乐家"), ("librarian", "图书管理员"), ("tailor", "裁缝"), ("sailor", "水手"),
    ("architect", "建筑师"), ("journalist", "记者"),
]
COLOURS = [
    ("red", "红色"), ("blue", "蓝色"), ("green", "绿色"), ("yellow", "黄色"), ("purple", "紫色"),
    ("orange", "橙色"), ("white", "白色"), ("black", "黑色"), ("grey", "灰色"), ("pink", "粉色"),
]
PETS = [
    ("cat", "猫"), ("dog", "狗"), ("parrot", "鹦鹉"), ("rabbit", "兔子"), ("turtle", "乌龟"),
    ("goldfish", "金鱼"), ("hamster", "仓鼠"),
]
PRODUCT_KINDS = [
    ("lamp", "台灯"), ("bicycle", "自行车"), ("kettle", "水壶"), ("umbrella", "雨伞"), ("phone", "手机"),
    ("backpack", "背包"), ("clock", "时钟"), ("camera", "相机"), ("radio", "收音机"), ("keyboard", "键盘"),
    ("stove", "炉子"), ("teapot", "茶壶"),
]
FOODS = [
    ("noodles", "面条"), ("cheese", "奶酪"), ("tea", "茶"), ("dumplings", "饺子"), ("honey", "蜂蜜"),
    ("apples", "苹果"), ("fish", "鱼"), ("bread", "面包"), ("plums", "李子"), ("rice cakes", "年糕"),
]
USES = [
    ("dyes", "染料"), ("fuel", "燃料"), ("medicine", "药物"), ("glue", "胶水"), ("fertiliser", "肥料"),
    ("paint", "油漆"), ("soap", "肥皂"), ("batteries", "电池"),
]
COMPANY_SUFFIXES = [
    ("Works", "工坊"), ("Labs", "实验室"), ("Trading", "贸易公司"), ("Industries", "工业公司"),
    ("Company", "公司"), ("Studio", "工作室"),
]
CHEMICAL_SUFFIXES = [("ane", "烷"), ("ol", "醇"), ("ite", "晶"), ("ium", "素")]
FORMULA_LETTERS = ["Ka", "Lo", "Vm", "Tr", "Zx", "Qe", "Nd", "Rb", "Ox", "Py"]

# Words swapped into the other language to make realistic language-mixing flaws.
# zh word -> en word (for Chinese answers with English mixed in) and the reverse.
ZH_TO_EN_SWAPS = [
    ("但是", "but"), ("非常", "very"), ("因为", "because"), ("所以", "so"), ("价格", "price"),
    ("城市", "city"), ("公司", "company"), ("产品", "product"), ("人口", "population"),
    ("大约", "about"), ("其实", "actually"), ("总之", "anyway"), ("首先", "first"), ("而且", "also"),
    ("出生", "born"), ("工作", "work"), ("喜欢", "like"), ("著名", "famous"), ("位于", "located in"),
    ("成立", "founded"), ("颜色", "color"), ("答案", "answer"), ("问题", "question"), ("一种", "a kind of"),
]
EN_CLAUSES_FOR_ZH = [
    "which is really interesting", "hope this helps", "by the way",
    "in other words", "as far as I know", "that is the answer",
]
EN_TO_ZH_SWAPS = [
    ("city", "城市"), ("very", "非常"), ("company", "公司"), ("price", "价格"), ("about", "大约"),
    ("because", "因为"), ("people", "人"), ("product", "产品"), ("famous", "著名"), ("born", "出生"),
    ("works", "工作"), ("river", "河"), ("year", "年"), ("also", "也"), ("region", "地区"),
    ("answer", "答案"), ("costs", "价格是"), ("located", "位于"),
]
ZH_CLAUSES_FOR_EN = ["总之就是这样", "希望对你有帮助", "这个很重要", "顺便说一下", "也就是说"]
