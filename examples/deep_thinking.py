import os
from http import HTTPStatus
from dashscope import Application

try:
    response = Application.call(
        # 若没有配置环境变量，可用百炼API Key将下行替换为：api_key="sk-xxx"。但不建议在生产环境中直接将API Key硬编码到代码中，以减少API Key泄露风险。
        api_key=os.getenv('DASHSCOPE_API_KEY'),
        app_id='YOUR_APP_ID',# 替换为实际的应用 ID
        prompt='你是谁？',# 替换为实际的应用输入
        stream=True,  # 是否流式输出，True：流式输出；False（默认值）: 非流式输出
        incremental_output=True,  # 是否增量输出，True：增量输出；False（默认值）: 非增量输出
        has_thoughts=True  # 是否返回思考过程，True：返回；False（默认值）: 不返回
    )

except Exception as e:
    print(f"API请求异常: {str(e)}")
    exit(1)

# 定义完整思考过程
reasoning_content = []
# 定义完整回复
answer_content = ""
# 判断是否结束思考过程并开始回复
is_answering = False

def print_section(title):
    """打印带装饰的分段标题"""
    print(f"\n{'=' * 20} {title} {'=' * 20}\n", flush=True)

print_section("思考过程")

for chunk in response:
    if chunk.status_code != HTTPStatus.OK:
        print(f'request_id={chunk.request_id}')
        print(f'code={chunk.status_code}')
        print(f'message={chunk.message}')
        print(f'请参考文档：https://help.aliyun.com/zh/model-studio/developer-reference/error-code')
        continue

    # 跳过空数据块
    if not chunk.output or (not chunk.output.thoughts and not chunk.output.text):
        continue

    # 处理思考过程
    if chunk.output.thoughts:
        for it in chunk.output.thoughts:
            if it.action_type == 'reasoning':# deepseek-r1类模型的思考过程action_type为reasoning，输出在thought
                content = str(it.thought) if not isinstance(it.thought, str) else it.thought
                reasoning_content.append(content)
                print(content, end="", flush=True)

    # 处理回答内容
    if chunk.output.text:
        if not is_answering:
            print_section("完整回复")
            is_answering = True
        
        answer_content += str(chunk.output.text)
        print(chunk.output.text, end="", flush=True)

# 最终结果整合
final_reasoning = "".join(reasoning_content)
final_answer = "".join(answer_content)

# 如果您需要打印完整思考过程与完整回复，请将以下代码解除注释后运行
#print_section("完整思考过程")
#print(final_reasoning)

#print_section("完整回复")
#print(final_answer)
